"""Bring the real ridehail system up for end-to-end tests: every service a process, the
embedded nats-server, Envoy in front; traffic only through the gateway.

The example folder is copied into the test's temporary directory (so its .corral state,
SQLite files and NATS store die with the test) and the manifest may be edited on the way
(shorter timeouts, fault settings).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx

from corral.broker import BrokerAddon
from corral.control import SystemSession, addons_for
from corral.manifest import load
from corral.plan import resolve

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "ridehail"


def copy_example(dest: Path, edit: Callable[[str], str] | None = None) -> Path:
    target = dest / "ridehail"
    shutil.copytree(
        EXAMPLE, target, ignore=shutil.ignore_patterns(".corral", "__pycache__", "*.db*")
    )
    manifest = target / "corral.yaml"
    if edit is not None:
        manifest.write_text(edit(manifest.read_text()))
    return manifest


@contextlib.asynccontextmanager
async def running_system(
    tmp: Path,
    *,
    edit: Callable[[str], str] | None = None,
    environment: str | None = None,
    timeout: float = 90,
) -> AsyncIterator[tuple[str, SystemSession]]:
    """Yield ``(gateway_url, session)`` once every instance is ready; ``environment``
    merges that overlay (``corral.<environment>.yaml``) over the manifest."""
    path = copy_example(tmp, edit)
    manifest = load(path, environment=environment)
    plan = resolve(manifest, python=sys.executable)
    addons = addons_for(plan)
    if not any(isinstance(a, BrokerAddon) for a in addons):
        addons.insert(0, BrokerAddon(environ={}))  # until addons_for adds the broker
    session = SystemSession(manifest, plan, addons=addons)
    run = asyncio.create_task(session.run())
    try:
        ready = asyncio.create_task(session.ready.wait())
        # FIRST_COMPLETED: `run` only ends at shutdown (or on a start error); the default
        # (ALL_COMPLETED) waited out the whole timeout on every start.
        done, _ = await asyncio.wait(
            {run, ready}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if ready not in done:
            ready.cancel()
            if run.done():
                run.result()  # raises the start error
            raise TimeoutError(f"ridehail not ready within {timeout}s")
        status = session.status()
        url = status.gateway_url or next(
            a.status()["gateway_url"] for a in addons if "gateway_url" in a.status()
        )
        await wait_for_jwks(url)
        yield url, session
    finally:
        await session.request_shutdown()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(run, 60)


async def wait_for_jwks(url: str, timeout: float = 20) -> None:
    """Envoy fetches the JWKS asynchronously after start; wait until a token passes."""
    async with httpx.AsyncClient(base_url=url, timeout=5) as client:
        deadline = asyncio.get_running_loop().time() + timeout
        response = None
        while asyncio.get_running_loop().time() < deadline:
            response = await client.get("/auth/.well-known/jwks.json")
            if response.status_code == 200:
                return
            await asyncio.sleep(0.05)
        raise TimeoutError(f"JWKS not served through the gateway: {response}")


def logs_of(session: Any) -> str:
    """Every instance's log lines (for failure messages)."""
    try:
        return "\n".join(str(e) for e in session.logs.tail(None, 400))
    except Exception as exc:  # best effort
        return f"(no logs: {exc})"
