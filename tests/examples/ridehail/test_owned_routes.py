"""The ownership table covers every route that takes an id (no service started)."""

from __future__ import annotations

from typing import get_args

from owned_routes import OWNED, id_routes
from rides.app import Step


def test_ownership_table_names_every_id_route() -> None:
    """Each route of each ridehail service that takes an id has a row in OWNED (and so a
    stranger test through the gateway), and every row names a real route."""
    assert {(o.service, o.method, o.route) for o in OWNED} == id_routes()


def test_every_step_of_a_ride_is_in_the_table() -> None:
    """``/rides/{ride_id}/{step}`` stands for one action per step; each one is tried."""
    steps = {o.gateway_path.rsplit("/", 1)[1] for o in OWNED if o.route.endswith("{step}")}
    assert steps == set(get_args(Step))
