"""What many test modules need: a free port, polling with a deadline, the real CLI, a
headless browser page.

One copy (issue 17.7), importable from any test module as ``testkit`` because pytest puts
``tests/`` on ``sys.path`` (``pythonpath`` in pyproject.toml).
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from playwright.sync_api import Page, ViewportSize

BROWSER = "/usr/bin/chromium"
"""The machine's Chromium: test tools cannot download a browser here."""
BROWSER_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for[T](
    predicate: Callable[[], T],
    *,
    timeout: float = 30.0,
    what: str = "condition",
    every: float = 0.05,
) -> T:
    """Poll ``predicate`` until it returns something truthy, and return that; fail the test
    with ``what`` after ``timeout`` seconds (never a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


def corral(
    *args: str, cwd: Path, timeout: float = 90.0, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``corral ARGS`` as a person runs it: a separate process, output captured; ``env``
    is added to this process's environment."""
    return subprocess.run(
        [sys.executable, "-m", "corral", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **env} if env else None,
        check=False,
    )


async def corral_async(
    *args: str, cwd: Path | None = None, timeout: float = 60.0
) -> tuple[int, str, str]:
    """``corral ARGS`` without blocking the event loop (for tests whose loop serves the API
    that the command calls): exit code, stdout, stderr."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "corral",
        *args,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@contextmanager
def browser_page(
    url: str, *, viewport: ViewportSize | None = None
) -> Iterator[tuple[Page, list[str]]]:
    """A page of headless Chromium on a throwaway profile, opened at ``url``; yields it
    with the list of uncaught page errors seen so far (a test asserts it is empty)."""
    from playwright.sync_api import sync_playwright  # only browser tests pay its import

    with sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
        browser = p.chromium.launch_persistent_context(
            profile,
            executable_path=BROWSER,
            args=list(BROWSER_ARGS),
            viewport=viewport,
        )
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(url)
            yield page, errors
        finally:
            browser.close()
