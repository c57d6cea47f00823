"""The base image every service image starts from, made on this machine when missing.

No registry is reachable from here (nor, often, from a build), so ``python:3.13-slim``
cannot be pulled: the base is Debian trixie (Python 3.13) made by ``debootstrap``
from Debian's package mirror, which is reachable, and imported with ``<engine> import``.
It is made once per engine and reused; debootstrap's progress lines are shown because
it takes a few minutes."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from corral.images._engine import Engine, EngineError, tail

BASE_IMAGE = "localhost/corral-base:trixie"
"""Tag of the locally made base (``localhost/``: podman's name for a local image;
docker keeps it as written)."""
BASE_PYTHON = "3.13"
"""Debian trixie's python3: the wheelhouse is built for it."""
SUITE = "trixie"
MIRROR = "http://deb.debian.org/debian"
PACKAGES = ("python3", "python3-venv", "ca-certificates")

CACHE = Path(os.environ.get("CORRAL_IMAGE_CACHE", "/var/tmp/corral-images"))  # noqa: S108
"""Scratch space for the root file system and the wheelhouses (a cache: safe to delete)."""


@contextlib.asynccontextmanager
async def machine_lock(what: str, progress: Callable[[str], None]) -> AsyncIterator[None]:
    """Held while ``what`` (an image or a wheelhouse) is made: another ``corral up`` on
    this machine making the same thing waits, then finds it made (by either engine)
    instead of running the same debootstrap, download or build beside it. An advisory
    lock on a file under the cache; the OS releases it when its holder dies."""
    folder = CACHE / "locks"
    await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
    path = folder / f"{hashlib.sha256(what.encode()).hexdigest()[:16]}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        waiting = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not waiting:
                    progress(f"waiting for another corral making {what}")
                    waiting = True
                await asyncio.sleep(0.2)  # polled: a blocking flock would not be cancellable
        yield
    finally:
        os.close(fd)  # releases the lock


async def ensure_base_image(engine: Engine, progress: Callable[[str], None]) -> str:
    """The base image's tag, made first if the engine does not have it."""
    if await engine.image_exists(BASE_IMAGE):
        return BASE_IMAGE
    async with machine_lock(BASE_IMAGE, progress):
        return await _make_base_image(engine, progress)


async def _make_base_image(engine: Engine, progress: Callable[[str], None]) -> str:
    if await engine.image_exists(BASE_IMAGE):  # made while this run waited
        return BASE_IMAGE
    if await copy_from_other_engine(engine, BASE_IMAGE, progress):
        return BASE_IMAGE
    if shutil.which("debootstrap") is None:
        raise EngineError(
            f"no base image {BASE_IMAGE} and no debootstrap to make one: "
            "`apt-get install debootstrap` (or tag a Debian image with python3 and "
            f"python3-venv as {BASE_IMAGE})"
        )
    if os.geteuid() != 0:
        raise EngineError(f"making the base image {BASE_IMAGE} needs root (debootstrap)")
    await asyncio.to_thread(CACHE.mkdir, parents=True, exist_ok=True)
    progress(f"making the base image {BASE_IMAGE} with debootstrap (once; a few minutes)")
    with tempfile.TemporaryDirectory(dir=CACHE, prefix="rootfs-") as rootfs:
        await _stream(
            ["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}",
             SUITE, rootfs, MIRROR],
            progress,
            "debootstrap",
        )  # fmt: skip
        # Smaller and reproducible enough: apt's lists and caches are not needed.
        for junk in ("var/lib/apt/lists", "var/cache/apt/archives"):
            shutil.rmtree(Path(rootfs) / junk, ignore_errors=True)
        progress(f"importing the base image into {engine.name}")
        tar = await asyncio.create_subprocess_exec(
            "tar", "-C", rootfs, "-c", ".", stdout=asyncio.subprocess.PIPE
        )
        assert tar.stdout is not None
        read_fd = tar.stdout
        importer = await asyncio.create_subprocess_exec(
            *engine.command("import", "-", BASE_IMAGE),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=engine.env,
        )
        assert importer.stdin is not None
        while chunk := await read_fd.read(1 << 20):
            importer.stdin.write(chunk)
            await importer.stdin.drain()
        importer.stdin.close()
        out, _ = await importer.communicate()
        if await tar.wait() != 0 or importer.returncode != 0:
            raise EngineError(
                "importing the base image failed:\n" + "\n".join(tail(out.decode(errors="replace")))
            )
    progress(f"base image {BASE_IMAGE} ready")
    return BASE_IMAGE


async def _stream(argv: list[str], progress: Callable[[str], None], what: str) -> None:
    """Run ``argv``, passing its lines to ``progress``; EngineError with the tail on failure."""
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    assert proc.stdout is not None
    lines: list[str] = []
    while raw := await proc.stdout.readline():
        line = raw.decode(errors="replace").rstrip()
        lines.append(line)
        if line.startswith(("I: Retrieving", "I: Validating", "I: Extracting", "I: Installing",
                            "I: Configuring", "I: Base system")):  # fmt: skip
            progress(f"{what}: {line[3:]}")
    if await proc.wait() != 0:
        raise EngineError(f"{what} failed:\n" + "\n".join(lines[-20:]))


async def copy_from_other_engine(
    engine: Engine, image: str, progress: Callable[[str], None]
) -> bool:
    """Copy ``image`` from the other engine when it has it (``save | load`` takes
    seconds; debootstrap or a build takes minutes). Whether ``engine`` has it now."""
    other_name = "podman" if engine.name == "docker" else "docker"
    binary = shutil.which(other_name)
    if binary is None:
        return False
    other = Engine(other_name, binary)
    try:
        if not await other.image_exists(image):
            return False
    except OSError:
        return False
    progress(f"copying {image} from {other_name} to {engine.name}")
    read, write = os.pipe()
    saver = await asyncio.create_subprocess_exec(
        *other.command("save", image), stdout=write, stderr=asyncio.subprocess.DEVNULL,
        env=other.env,
    )  # fmt: skip
    os.close(write)
    try:
        loader = await asyncio.create_subprocess_exec(
            *engine.command("load"), stdin=read, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL, env=engine.env,
        )  # fmt: skip
    finally:
        os.close(read)
    ok = await loader.wait() == 0 and await saver.wait() == 0
    return ok and await engine.image_exists(image)
