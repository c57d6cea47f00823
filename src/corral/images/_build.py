"""A service's image for ``corral up --runtime docker|podman``, built from the exporter's
own Dockerfile (one renderer for ``corral export`` and the container runtime).

The tag is a content hash of what the image holds: the system's source files, the
rendered Dockerfile and requirements, the wheelhouse (named by its own hash) and the
base image's id. An image with that tag is reused without building; a changed source
file gives a new tag. The build context is a copy of the system's folder under
``.corral/images/<service>`` with the requirements and wheels beside it in ``_corral/``,
so nothing is written into the person's folder."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

from corral.export import (
    ExportOptions,
    Sources,
    render_dockerfile,
    render_dockerignore,
    render_requirements,
)
from corral.images._base import copy_from_other_engine, machine_lock
from corral.images._engine import Engine, EngineError
from corral.plan import Plan

CONTEXT = "_corral"
"""Inside the build context: requirements.txt, the Dockerfile and the wheels."""
WHEELS = f"{CONTEXT}/wheels"
_SKIP_DIRS = frozenset(
    {".corral", ".git", ".venv", "deploy", "__pycache__", ".mypy_cache", ".pytest_cache",
     ".ruff_cache", ".hypothesis", "node_modules"}
)  # fmt: skip
_STEP = re.compile(r"^(?:Step|STEP) (\d+)/(\d+)\s*:\s*(.*)$")


def image_tag(system: str, service: str, digest: str) -> str:
    return f"localhost/corral-{system}-{service}:{digest}"


def source_files(root: Path) -> Iterator[Path]:
    """The system's files as the image copies them (no state, caches or exports)."""
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS)
        for name in sorted(files):
            if not name.endswith((".pyc", ".pyo")):
                yield Path(folder) / name


def render_build_files(plan: Plan, service: str, *, base_image: str,
                       requirements: tuple[str, ...]) -> dict[str, str]:  # fmt: skip
    """Dockerfile, requirements and ignore file of ``service``, relative to the context."""
    options = ExportOptions(context=CONTEXT, wheelhouse=WHEELS, base_image=base_image)
    return {
        f"{CONTEXT}/docker/{service}.Dockerfile": render_dockerfile(
            plan, service, base_image=base_image, wheelhouse=WHEELS, context=CONTEXT
        ),
        f"{CONTEXT}/docker/requirements.txt": render_requirements(
            Sources(requirements=requirements), options
        ),
        ".dockerignore": render_dockerignore(context=CONTEXT, wheelhouse=WHEELS),
    }


def digest(plan: Plan, files: dict[str, str], wheelhouse: Path, base_id: str) -> str:
    h = hashlib.sha256()
    for name, text in sorted(files.items()):
        h.update(f"{name}\0{text}\0".encode())
    h.update(f"{wheelhouse.name}\0{base_id}\0".encode())
    for path in source_files(plan.root):
        h.update(path.relative_to(plan.root).as_posix().encode() + b"\0")
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()[:16]


async def base_id(engine: Engine, base_image: str) -> str:
    code, out, err = await engine.run("image", "inspect", "--format", "{{.Id}}", base_image)
    if code != 0:
        raise EngineError(f"base image {base_image}: {err.strip()}")
    # docker prints "sha256:<hex>", podman "<hex>" for the same image: one id, so both
    # engines compute the same tags and each can copy the other's images, not rebuild.
    return out.strip().removeprefix("sha256:")


async def build_image(
    engine: Engine,
    plan: Plan,
    service: str,
    *,
    base_image: str,
    base: str,
    wheelhouse: Path,
    requirements: tuple[str, ...],
    progress: Callable[[str], None],
) -> str:
    """The tag of ``service``'s image, built unless an image of the same content exists."""
    files = render_build_files(plan, service, base_image=base_image, requirements=requirements)
    content = await asyncio.to_thread(digest, plan, files, wheelhouse, base)
    tag = image_tag(plan.system, service, content)
    if await engine.image_exists(tag):
        return tag
    async with machine_lock(tag, progress):  # another run building it: wait, then reuse
        if await engine.image_exists(tag) or await copy_from_other_engine(engine, tag, progress):
            return tag
        progress(f"building the image of {service} ({tag})")
        context = plan.state_dir / "images" / service
        await asyncio.to_thread(_write_context, plan, context, files, wheelhouse)
        dockerfile = context / CONTEXT / "docker" / f"{service}.Dockerfile"
        code, out, err = await engine.run(
            "build", *engine.run_flags, "--network", "none",
            "--label", f"corral.system={plan.system}",
            "-f", str(dockerfile), "-t", tag, str(context), timeout=900,
        )  # fmt: skip
        if code != 0:
            raise EngineError(build_failure(service, dockerfile, out + err))
        await asyncio.to_thread(shutil.rmtree, context, ignore_errors=True)
    await _remove_older(engine, tag)
    return tag


KEEP_NEWEST = 2
"""Older images of a service kept beside the current one, whatever their age."""
KEEP_YOUNGER_S = 3600.0
"""Older images created this recently are kept too: another checkout of the same system,
or this system started before an edit, may still restart instances from them (an untagged
image cannot be restarted from, and the instance would crash-loop with exit 125)."""
_CREATED = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)(?:\.\d+)? ([+-]\d{4})")


async def _remove_older(engine: Engine, tag: str) -> None:
    """Untag the service's older images: each source edit makes one, and they would pile
    up. Recent ones stay (see KEEP_YOUNGER_S); without --force, so an image a container
    uses stays too."""
    repository = tag.rsplit(":", 1)[0]
    code, out, _ = await engine.run(
        "images", "--format", "{{.Repository}}:{{.Tag}}|{{.CreatedAt}}", repository
    )
    if code != 0:
        return
    rows = [(line.partition("|")[0], line.partition("|")[2]) for line in out.splitlines()]
    older = images_to_untag(rows, current=tag, now=time.time())
    if older:
        await engine.run("rmi", *older)


def images_to_untag(rows: list[tuple[str, str]], *, current: str, now: float) -> list[str]:
    """Of (tag, created) rows as the engine lists them, the tags to untag: not the current
    one, not the KEEP_NEWEST newest others, none younger than KEEP_YOUNGER_S, and none
    whose creation time cannot be read (kept: removing is the irreversible choice)."""
    dated: list[tuple[float, str]] = []
    for name, created in rows:
        if name == current:
            continue
        match = _CREATED.match(created.strip())
        if match is None:
            continue
        stamp = datetime.strptime(" ".join(match.groups()), "%Y-%m-%d %H:%M:%S %z")
        dated.append((stamp.timestamp(), name))
    dated.sort(reverse=True)
    return [name for at, name in dated[KEEP_NEWEST:] if now - at > KEEP_YOUNGER_S]


def _write_context(plan: Plan, context: Path, files: dict[str, str], wheelhouse: Path) -> None:
    """A copy of the system's folder, the build files, and the wheels (hard links)."""
    shutil.rmtree(context, ignore_errors=True)
    for path in source_files(plan.root):
        target = context / path.relative_to(plan.root)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    for name, text in files.items():
        (context / name).parent.mkdir(parents=True, exist_ok=True)
        (context / name).write_text(text)
    wheels = context / WHEELS
    wheels.mkdir(parents=True)
    for wheel in wheelhouse.glob("*.whl"):
        _link_or_copy(wheel, wheels / wheel.name)


def build_failure(service: str, dockerfile: Path, log: str) -> str:
    """The failed build's tail, and the Dockerfile line of the step that failed."""
    lines = log.strip().splitlines()
    where = ""
    for line in reversed(lines):
        match = _STEP.match(line.strip())
        if match is None:
            continue
        instruction = match.group(3).strip()
        text = dockerfile.read_text() if dockerfile.exists() else ""
        first = instruction.split("\n")[0][:40]
        number = next(
            (n for n, row in enumerate(text.splitlines(), 1) if row.startswith(first)), None
        )
        at = f"{dockerfile}:{number}" if number else str(dockerfile)
        where = f"\nfailed at step {match.group(1)}/{match.group(2)} ({at}): {instruction}"
        break
    return f"the image of {service} did not build{where}\n" + "\n".join(
        f"  | {line}" for line in lines[-15:]
    )


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:  # another file system
        shutil.copy2(source, target)
