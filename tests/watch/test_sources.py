"""Which services a changed file reloads: the app's package, the workdir, ``watch:``."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from corral.manifest import ManifestError, parse
from corral.plan import resolve
from corral.watch import SourceMap

MANIFEST = """name: shop
services:
  orders:
    app: orders.main:svc
  payments:
    app: payments:svc
    depends_on: [orders]
  worker:
    command: [python, run.py]
    workdir: worker
  script:
    command: [python, tool.py]
  custom:
    command: [python, -m, custom]
    watch: ["src/**/*.py", "../shared/*.py", "!src/generated/**"]
    workdir: custom
"""


@pytest.fixture
def sources(tmp_path: Path) -> SourceMap:
    for folder in ("orders", "worker", "custom/src/generated", "shared", ".corral/logs"):
        (tmp_path / folder).mkdir(parents=True)
    (tmp_path / "payments.py").write_text("")
    path = tmp_path / "corral.yaml"
    path.write_text(MANIFEST)
    plan = resolve(parse(MANIFEST, path), python=sys.executable)
    return SourceMap(plan, [path])


@pytest.mark.parametrize(
    ("relative", "services"),
    [
        ("orders/main.py", ("orders",)),
        ("orders/sub/models.py", ("orders",)),
        ("payments.py", ("payments",)),
        ("worker/run.py", ("worker",)),
        ("worker/templates/a.html", ("worker",)),
        ("tool.py", ()),  # a command service in the manifest's folder: not watched
        ("custom/src/app/x.py", ("custom",)),
        ("custom/src/generated/pb.py", ()),  # negated pattern
        ("custom/README.md", ()),
        ("shared/util.py", ("custom",)),  # a pattern that leaves the workdir
        ("orders/__pycache__/main.cpython-312.pyc", ()),
        (".corral/logs/orders-1.log", ()),
    ],
)
def test_files_map_to_services(
    sources: SourceMap, tmp_path: Path, relative: str, services: tuple[str, ...]
) -> None:
    """Each file reloads exactly the services whose sources it is."""
    assert sources.services_of(tmp_path / relative) == services


def test_a_storm_reloads_each_service_once_in_start_order(
    sources: SourceMap, tmp_path: Path
) -> None:
    """A git checkout of 1,000 files is one reload per affected service, dependencies first."""
    paths = [tmp_path / "payments.py"] * 10
    paths += [tmp_path / f"orders/m{i}.py" for i in range(990)]
    changes = sources.changes(paths)
    assert changes.services == ("orders", "payments")
    assert len(changes.files["orders"]) == 990
    assert not changes.manifest


def test_the_manifest_is_its_own_change(sources: SourceMap, tmp_path: Path) -> None:
    """Saving corral.yaml is a manifest change, not a reload of every service."""
    changes = sources.changes([tmp_path / "corral.yaml"])
    assert changes.manifest
    assert changes.services == ()
    assert bool(changes)
    assert not sources.changes([tmp_path / "notes.txt"])


def test_roots_cover_every_source_once(sources: SourceMap, tmp_path: Path) -> None:
    """The watched folders are the manifest's folder plus what lies outside it."""
    assert sources.roots == (tmp_path.resolve(),)


@pytest.mark.parametrize("watch", ["[]", '["/etc/*.py"]', '[""]'])
def test_bad_watch_patterns_are_located_errors(tmp_path: Path, watch: str) -> None:
    """An empty list, an absolute or blank pattern: a manifest error at the key."""
    text = f"name: x\nservices:\n  a:\n    command: [run]\n    watch: {watch}\n"
    with pytest.raises(ManifestError) as caught:
        parse(text, tmp_path / "corral.yaml")
    assert "watch" in str(caught.value)
    assert "corral.yaml:5" in str(caught.value)
