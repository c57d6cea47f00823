"""The configuration layers and their pure operations: set, unset, a new manifest, diff."""

from __future__ import annotations

from typing import Any

import pytest

from corral.config import (
    Change,
    InvalidChangeError,
    Secret,
    ServiceConfig,
    diff,
    rebase,
    set_values,
    unset_values,
)

WEB = ServiceConfig(
    base={"LEVEL": "info", "REGION": "eu"},
    sources={"LEVEL": "corral.yaml:7:7", "REGION": "corral.prod.yaml:4:9"},
    secrets={"API_KEY": Secret(ref="env:SHOP_KEY", fingerprint="fp:aaaaaaaaaaaa")},
)
SERVICES = {"web": WEB, "api": ServiceConfig(base={"WORKERS": "2"})}


def test_runtime_values_win_over_the_base_and_say_where_they_come_from() -> None:
    """set puts a runtime layer on top; sources name the layer of each value."""
    after = set_values(SERVICES, "web", {"LEVEL": "debug", "NEW": "1"}, version=7, author="ada")
    web = after["web"]
    assert web.values == {"LEVEL": "debug", "REGION": "eu", "NEW": "1"}
    assert web.source("LEVEL") == "corral config set (version 7, ada)"
    assert web.source("REGION") == "corral.prod.yaml:4:9"
    assert web.source("API_KEY") == "secret env:SHOP_KEY"
    assert web.effective()["API_KEY"] == "secret fp:aaaaaaaaaaaa"
    assert after["api"] == SERVICES["api"]


@pytest.mark.parametrize(
    ("service", "values", "message"),
    [
        ("shop", {"X": "1"}, "no service named 'shop' (services: api, web)"),
        ("web", {"1X": "1"}, "invalid environment variable name '1X'"),
        ("web", {"PORT": "1"}, "PORT is set by Corral for each instance"),
        ("web", {"CORRAL_CONFIG_TOKEN": "x"}, "CORRAL_CONFIG_TOKEN is set by Corral"),
        ("web", {"API_KEY": "sk_live"}, "API_KEY is a secret of web (env:SHOP_KEY)"),
    ],
)
def test_set_refuses_what_it_may_not_set(
    service: str, values: dict[str, str], message: str
) -> None:
    """Unknown services, bad names, Corral's own variables and secrets cannot be set."""
    with pytest.raises(
        InvalidChangeError, match="^" + message.replace("(", r"\(").replace(")", r"\)")
    ):
        set_values(SERVICES, service, values, version=2, author="ada")


def test_unset_drops_the_runtime_value_and_the_base_applies_again() -> None:
    """unset removes a runtime value only; the manifest's value is back."""
    changed = set_values(SERVICES, "web", {"LEVEL": "debug", "NEW": "1"}, version=2, author="ada")
    back = unset_values(changed, "web", ["LEVEL", "NEW"])
    assert back["web"].values == WEB.values
    assert back == SERVICES


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("LEVEL", "LEVEL of web comes from corral.yaml:7:7, not from `corral config set`"),
        ("API_KEY", "API_KEY of web comes from secret env:SHOP_KEY"),
        ("NOPE", "web has no variable NOPE"),
    ],
)
def test_unset_names_where_a_value_without_runtime_layer_comes_from(key: str, message: str) -> None:
    """unset of a manifest value or a secret says where to change it instead."""
    with pytest.raises(InvalidChangeError, match="^" + message.replace("`", ".")):
        unset_values(SERVICES, "web", [key])


REBASES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    (
        "runtime values stay over a new base",
        {"web": ServiceConfig(base={"LEVEL": "warn"}), "api": ServiceConfig()},
        {"web": {"LEVEL": "debug"}, "api": {}},
    ),
    (
        "a service gone takes its runtime values",
        {"web": ServiceConfig()},
        {"web": {"LEVEL": "debug"}},
    ),
    (
        "a variable that became a secret loses its runtime value",
        {"web": ServiceConfig(secrets={"LEVEL": Secret(ref="file:/l", fingerprint="fp:b")})},
        {"web": {"LEVEL": "secret fp:b"}},
    ),
]


@pytest.mark.parametrize(
    ("layers", "expected"), [r[1:] for r in REBASES], ids=[r[0] for r in REBASES]
)
def test_rebase(layers: dict[str, ServiceConfig], expected: dict[str, dict[str, str]]) -> None:
    """A new manifest replaces the base and keeps the runtime values that still apply."""
    current = set_values(SERVICES, "web", {"LEVEL": "debug"}, version=2, author="ada")
    after = rebase(current, layers)
    assert {name: config.effective() for name, config in after.items()} == expected


def test_diff_lists_every_changed_variable_with_secrets_as_fingerprints() -> None:
    """diff: added, changed and removed variables, by service then name; never a value of
    a secret, only its fingerprint."""
    rotated = WEB.model_copy(
        update={"secrets": {"API_KEY": Secret(ref="env:SHOP_KEY", fingerprint="fp:bbbbbbbbbbbb")}}
    )
    after = set_values(
        {**SERVICES, "web": rotated}, "web", {"LEVEL": "debug"}, version=2, author="a"
    )
    after = {"web": after["web"], "cart": ServiceConfig(base={"TTL": "5"})}
    assert diff(SERVICES, after) == [
        Change(service="api", key="WORKERS", old="2", new=None),
        Change(service="cart", key="TTL", old=None, new="5"),
        Change(
            service="web", key="API_KEY", old="secret fp:aaaaaaaaaaaa", new="secret fp:bbbbbbbbbbbb"
        ),
        Change(service="web", key="LEVEL", old="info", new="debug"),
    ]
    assert diff(SERVICES, SERVICES) == []
