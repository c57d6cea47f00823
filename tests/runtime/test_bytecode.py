"""Instances of users who set PYTHONDONTWRITEBYTECODE still get a bytecode cache: one
under the system's .corral/, so only the first start compiles (corral.runtime._environ)."""

from __future__ import annotations

import pytest
from runtime_helpers import service

from corral.runtime._environ import BYTECODE_CACHE, inherited_environment

pytestmark = pytest.mark.timeout(30)


def test_dont_write_bytecode_becomes_a_cache_prefix() -> None:
    env = inherited_environment(
        {"PYTHONDONTWRITEBYTECODE": "1", "PATH": "/bin"}, withheld=(), bytecode_cache="/s/pc"
    )
    assert env == {"PATH": "/bin", "PYTHONPYCACHEPREFIX": "/s/pc"}


def test_a_users_own_prefix_and_ordinary_environments_are_kept() -> None:
    own = {"PYTHONDONTWRITEBYTECODE": "1", "PYTHONPYCACHEPREFIX": "/mine"}
    assert inherited_environment(own, withheld=(), bytecode_cache="/s/pc") == {
        "PYTHONPYCACHEPREFIX": "/mine"
    }
    assert inherited_environment({"PATH": "/bin"}, withheld=(), bytecode_cache="/s/pc") == {
        "PATH": "/bin"
    }


async def test_instance_writes_bytecode_under_corral(system, monkeypatch) -> None:
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    monkeypatch.delenv("PYTHONPYCACHEPREFIX", raising=False)
    orch, _ = system(
        {"web": service(env={"SVC_PRINT_ENV": "PYTHONDONTWRITEBYTECODE,PYTHONPYCACHEPREFIX"})}
    )
    await orch.up()
    cache = orch.state_dir / BYTECODE_CACHE
    lines = {line.line for line in orch.logs.read(["web"])}
    assert "PYTHONDONTWRITEBYTECODE=None" in lines
    assert f"PYTHONPYCACHEPREFIX={cache}" in lines
    # What the instance imported was compiled into the cache, for the next start.
    assert any(cache.rglob("*.pyc"))
