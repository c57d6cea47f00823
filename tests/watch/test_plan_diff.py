"""A saved manifest as a diff: what each kind of edit asks the running system to do."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from corral.manifest import parse
from corral.plan import PlanDiff, diff_plans, resolve

BASE = """name: shop
services:
  orders: {app: orders:svc, replicas: 2, env: {MODE: a}}
  payments: {app: payments:svc, depends_on: [orders]}
gateway:
  routes:
    - {match: {prefix: /orders}, service: orders}
"""


def plan(text: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    return resolve(parse(text, tmp_path / "corral.yaml"), python=sys.executable)


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (("replicas: 2", "replicas: 3"), PlanDiff(rescaled=(("orders", 3),))),
        (("MODE: a", "MODE: b"), PlanDiff(configured=("orders",))),
        (("app: orders:svc", "app: orders.v2:svc"), PlanDiff(restarted=("orders",))),
        (("prefix: /orders", "prefix: /o"), PlanDiff(routes=True)),
        (
            ("  payments: {app: payments:svc, depends_on: [orders]}\n", ""),
            PlanDiff(removed=("payments",)),
        ),
        (
            ("gateway:", "  stock: {app: stock:svc}\ngateway:"),
            PlanDiff(added=("stock",)),
        ),
        (("name: shop", "name: shop2"), PlanDiff(routes=True, unsupported=("the system's name",))),
        (("name: shop", "name: shop"), PlanDiff()),
    ],
)
def test_each_edit_maps_to_its_change(
    tmp_path: Path, edit: tuple[str, str], expected: PlanDiff
) -> None:
    """Replicas scale, env rolls out, a new app replaces, routes go live, and so on."""
    before = plan(BASE, tmp_path)
    after = plan(BASE.replace(*edit), tmp_path)
    assert diff_plans(before, after) == expected
    assert bool(diff_plans(before, after)) == (expected != PlanDiff())


def test_a_service_can_change_several_ways_at_once(tmp_path: Path) -> None:
    """Replicas, env and command together: rescaled, configured and restarted."""
    before = plan(BASE, tmp_path)
    text = BASE.replace("replicas: 2, env: {MODE: a}", "replicas: 1, env: {MODE: c}")
    after = plan(text.replace("app: orders:svc", "app: orders2:svc"), tmp_path)
    change = diff_plans(before, after)
    assert change.restarted == ("orders",)
    assert change.configured == ("orders",)
    assert change.rescaled == (("orders", 1),)
