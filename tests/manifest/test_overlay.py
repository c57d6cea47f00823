"""Environment overlays: what merging ``corral.<env>.yaml`` over ``corral.yaml`` gives, and
that every problem the overlay brings is reported at its own file, line and column."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from corral.manifest import ManifestError, SourceMap, format_path, load, overlay_path, parse
from corral.manifest._overlay import merge_overlay
from corral.manifest._source import parse_yaml

BASE = """\
name: shop
services:
  web:
    command: [python, web.py]
    replicas: 2
    env:
      LEVEL: info
      DEBUG: "1"
    database: sqlite
  api:
    command: python api.py
    port: 8080
gateway:
  max_body_size: 64Ki
  routes:
    - {match: {prefix: /api}, service: api}
"""


def merged(overlay: str) -> Any:
    """The validated spec of BASE with ``overlay`` merged over it."""
    return parse(BASE, "corral.yaml", overlay=(overlay, "corral.prod.yaml")).spec


MERGES: list[tuple[str, str, Any]] = [
    # (case, overlay, expected) where expected maps a dotted getter to its value
    ("replicas change", "services: {web: {replicas: 5}}", {"services.web.replicas": 5}),
    (
        "env merges key by key",
        "services: {web: {env: {DEBUG: '0', REGION: eu}}}",
        {"services.web.env": {"LEVEL": "info", "DEBUG": "0", "REGION": "eu"}},
    ),
    (
        "null removes a key",
        "services: {web: {env: {DEBUG: null}}}",
        {"services.web.env": {"LEVEL": "info"}},
    ),
    ("null removes a setting", "services: {api: {port: null}}", {"services.api.port": None}),
    (
        "a list is replaced whole",
        "services: {web: {command: [python, -O, web.py]}}",
        {"services.web.command": ("python", "-O", "web.py")},
    ),
    (
        "a shorthand is replaced by a mapping",
        "services: {web: {database: {engine: postgres, name: shop_web}}}",
        {"services.web.database.engine": "postgres", "services.web.database.name": "shop_web"},
    ),
    ("gateway limits", "gateway: {max_body_size: 1Mi}", {"gateway.max_body_size": 2**20}),
    (
        "routes are restated",
        "gateway: {routes: [{match: {prefix: /web}, service: web}]}",
        {"gateway.routes.0.service": "web", "gateway.routes.length": 1},
    ),
    (
        "an empty overlay changes nothing",
        "# nothing for this environment\n",
        {"services.web.replicas": 2},
    ),
    (
        "secrets may come from an overlay",
        "services: {api: {secrets: {TOKEN: {env: API_TOKEN}}}}",
        {"services.api.secrets.TOKEN.env": "API_TOKEN"},
    ),
]


def _get(spec: Any, dotted: str) -> Any:
    value = spec
    for part in dotted.split("."):
        if part == "length":
            return len(value)
        if part.isdigit():
            value = value[int(part)]
        elif isinstance(value, dict):
            value = value[part]
        else:
            value = getattr(value, part)
    return value


@pytest.mark.parametrize(
    ("overlay", "expected"), [m[1:] for m in MERGES], ids=[m[0] for m in MERGES]
)
def test_overlay_merge(overlay: str, expected: dict[str, Any]) -> None:
    """Mappings merge key by key, other values replace, null removes."""
    spec = merged(overlay)
    for getter, value in expected.items():
        assert _get(spec, getter) == value, getter
    untouched = parse(BASE, "corral.yaml").spec
    assert spec.services["api"].command == untouched.services["api"].command


PROBLEMS: list[tuple[str, str, list[str]]] = [
    # (case, overlay, rendered diagnostics: file:line:col path: message (hint))
    (
        "unknown key",
        "services:\n  web:\n    replica: 3\n",
        [
            "corral.prod.yaml:3:5: services.web.replica: unknown key 'replica' "
            "(did you mean 'replicas'?)"
        ],
    ),
    (
        "bad value",
        "services:\n  web:\n    env:\n      RATE: 3.10\n",
        [
            "corral.prod.yaml:4:7: services.web.env.RATE: expected a string, got 3.1 "
            "(quote it to make it a string)"
        ],
    ),
    (
        "unknown service",
        "services:\n  webb:\n    replicas: 3\n",
        [
            "corral.prod.yaml:2:3: services.webb: the overlay changes service 'webb', which "
            "corral.yaml does not define (did you mean 'web'?)"
        ],
    ),
    (
        "a reference to an unknown service",
        "gateway:\n  routes:\n    - {match: {prefix: /x}, service: nope}\n",
        [
            "corral.prod.yaml:3:29: gateway.routes[0].service: unknown service 'nope' "
            "(services: api, web)"
        ],
    ),
    (
        "a secret written as a value",
        "services:\n  api:\n    secrets:\n      TOKEN: s3cr3t\n",
        [
            "corral.prod.yaml:4:7: services.api.secrets.TOKEN: a secret's value is never written "
            "in the manifest (refer to it: {env: NAME} (the environment corral runs in) or "
            "{file: path})"
        ],
    ),
    (
        "removing a required key blames the base mapping",
        "services:\n  api:\n    command: null\n",
        [
            "corral.yaml:10:3: services.api: a service needs 'command' or 'app' (command: the "
            "program to run; app: module:attribute of a corral.sdk Service)"
        ],
    ),
    (
        "a fixed port made shared by the overlay",
        "services:\n  api:\n    replicas: 2\n",
        [
            "corral.yaml:12:5: services.api.port: fixed port 8080 cannot be shared by 2 "
            "replicas (drop 'port' to have a port allocated per replica, or use replicas: 1)"
        ],
    ),
]


@pytest.mark.parametrize(
    ("overlay", "expected"), [p[1:] for p in PROBLEMS], ids=[p[0] for p in PROBLEMS]
)
def test_overlay_problem_positions(overlay: str, expected: list[str]) -> None:
    """A problem an overlay brings names the file, line and column where it is written."""
    with pytest.raises(ManifestError) as caught:
        merged(overlay)
    assert [str(d) for d in caught.value.diagnostics] == expected


def test_problems_in_both_files_come_back_together() -> None:
    """A base mistake and an overlay mistake are reported in one error naming both files."""
    base = BASE.replace("    replicas: 2\n", "    replicas: many\n")
    with pytest.raises(ManifestError) as caught:
        parse(base, "corral.yaml", overlay=("services: {api: {prot: 1}}", "corral.prod.yaml"))
    assert [(d.file, format_path(d.path)) for d in caught.value.diagnostics] == [
        ("corral.prod.yaml", "services.api.prot"),
        ("corral.yaml", "services.web.replicas"),
    ]
    assert str(caught.value).startswith("2 problems in corral.prod.yaml and corral.yaml:\n")


def test_a_schema_error_in_the_overlay_does_not_hide_its_references() -> None:
    """An overlay's unknown key and its route to an unknown service come back together."""
    overlay = (
        "services:\n  web:\n    replica: 3\n"
        "gateway:\n  routes:\n    - {match: {prefix: /}, service: wbe}\n"
    )
    with pytest.raises(ManifestError) as caught:
        merged(overlay)
    assert [str(d) for d in caught.value.diagnostics] == [
        "corral.prod.yaml:3:5: services.web.replica: unknown key 'replica' "
        "(did you mean 'replicas'?)",
        "corral.prod.yaml:6:28: gateway.routes[0].service: unknown service 'wbe' "
        "(did you mean 'web'?)",
    ]


UNREADABLE: list[tuple[str, str, str, list[str]]] = [
    # (case, base, overlay, the files and key paths of every problem, in order)
    (
        "overlay syntax error",
        BASE.replace("    replicas: 2\n", "    replicas: many\n"),
        "services: {web: [\n",
        ["corral.prod.yaml:2:1 (top level)", "corral.yaml:5:5 services.web.replicas"],
    ),
    (
        "overlay not a mapping",
        BASE.replace("    replicas: 2\n", "    replicas: many\n"),
        "- replicas: 3\n",
        ["corral.prod.yaml:1:1 (top level)", "corral.yaml:5:5 services.web.replicas"],
    ),
    (
        "both files have syntax errors",
        BASE + "  - [\n",
        "services: {web: [\n",
        ["corral.prod.yaml:2:1 (top level)", "corral.yaml:17:3 (top level)"],
    ),
]


@pytest.mark.parametrize(
    ("base", "overlay", "expected"), [u[1:] for u in UNREADABLE], ids=[u[0] for u in UNREADABLE]
)
def test_an_unreadable_file_does_not_hide_the_other_files_problems(
    base: str, overlay: str, expected: list[str]
) -> None:
    """An overlay that cannot be read is reported with the manifest's own problems (and
    the manifest's syntax error with the overlay's)."""
    with pytest.raises(ManifestError) as caught:
        parse(base, "corral.yaml", overlay=(overlay, "corral.prod.yaml"))
    assert [
        f"{d.file}:{d.line}:{d.column} {format_path(d.path)}" for d in caught.value.diagnostics
    ] == expected


class CountingPositions(dict[Any, Any]):
    """A source map's positions that count how often they are walked whole."""

    walks = 0

    def __iter__(self) -> Any:
        CountingPositions.walks += 1
        return super().__iter__()

    def items(self) -> Any:
        CountingPositions.walks += 1
        return super().items()


def test_merging_walks_each_files_positions_a_fixed_number_of_times() -> None:
    """An overlay setting 300 variables costs no more walks of the positions than one
    setting 3 (each replaced key used to walk both files' positions: quadratic, minutes
    for an overlay of 40,000 keys)."""

    def walks(count: int) -> int:
        names = [f"K{i}" for i in range(count)]
        env = "services:\n  web:\n    env:\n"
        base = "name: shop\n" + env + "".join(f"      {name}: a\n" for name in names)
        overlay = env + "".join(f"      {name}: b\n" for name in names)
        data, source = parse_yaml(base, "corral.yaml")
        changes, overlay_source = parse_yaml(overlay, "corral.prod.yaml")
        counted = [
            SourceMap(s.file, CountingPositions(s.positions), s.files)
            for s in (source, overlay_source)
        ]
        CountingPositions.walks = 0
        merged, _, problems = merge_overlay(data, counted[0], changes, counted[1])
        assert merged["services"]["web"]["env"][names[-1]] == "b"
        assert not problems
        return CountingPositions.walks

    assert walks(300) == walks(3)


def test_overlay_must_be_a_mapping() -> None:
    """An overlay that is a list is refused at its first line."""
    with pytest.raises(ManifestError) as caught:
        merged("- replicas: 3\n")
    assert str(caught.value.diagnostics[0]) == (
        "corral.prod.yaml:1:1: (top level): an overlay must be a mapping (key: value)"
    )


def test_load_reads_the_overlay_next_to_the_manifest(tmp_path: Path) -> None:
    """load(environment=prod) merges corral.prod.yaml and records which file it was."""
    (tmp_path / "corral.yaml").write_text(BASE)
    (tmp_path / "corral.prod.yaml").write_text("services: {web: {replicas: 4}}\n")
    manifest = load(tmp_path, environment="prod")
    assert manifest.spec.services["web"].replicas == 4
    assert manifest.environment == "prod"
    assert manifest.overlay == overlay_path(tmp_path / "corral.yaml", "prod")
    assert load(tmp_path).spec.services["web"].replicas == 2


@pytest.mark.parametrize(
    ("environment", "expected"),
    [
        (
            "staging",
            "corral.staging.yaml:1:1: (top level): no overlay for environment 'staging' "
            "(environments next to corral.yaml: prod)",
        ),
        (
            "Prod!",
            "corral.yaml:1:1: (top level): invalid environment name 'Prod!' "
            "(lower-case letters, digits, '-' and '_', e.g. prod or staging)",
        ),
    ],
)
def test_load_names_a_missing_or_bad_environment(
    tmp_path: Path, environment: str, expected: str
) -> None:
    """An environment without an overlay file lists the environments that exist."""
    (tmp_path / "corral.yaml").write_text(BASE)
    (tmp_path / "corral.prod.yaml").write_text("{}\n")
    with pytest.raises(ManifestError) as caught:
        load(tmp_path, environment=environment)
    assert str(caught.value.diagnostics[0]).replace(f"{tmp_path}/", "") == expected
