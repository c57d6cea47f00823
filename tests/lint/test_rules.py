"""`corral lint`'s rules, table-driven: for each rule a manifest that triggers it and one
that does not; every finding located (line, column, key path) with a message and hint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from corral.cli import app
from corral.lint import RULES, Finding, Report, Severity, lint, lint_target, rule_named
from corral.manifest import format_path, parse
from corral.plan import resolve

ROOT = Path(__file__).resolve().parents[2]

# Every service is an SDK app (readiness by default) unless a case says otherwise.
APP = "{app: m.app:svc"


def manifest(services: str, rest: str = "") -> str:
    return f"name: shop\nservices:\n{services}{rest}"


def flagged(report: Report) -> list[Finding]:
    return [f for f in report.findings if f.severity is not Severity.INFO]


def run(text: str, *, max_call_depth: int = 3) -> Report:
    loaded = parse(text, "corral.yaml")
    return lint(loaded, resolve(loaded, python="python3"), max_call_depth=max_call_depth)


def found(report: Report) -> list[tuple[str, str]]:
    """Errors and warnings; info findings (CL601 on a manifest sized for nothing) have
    their own table below."""
    return [
        (f.rule.id, format_path(f.diagnostic.path))
        for f in report.findings
        if f.severity is not Severity.INFO
    ]


# A web front reached by the gateway, calling api, with a policy: clean.
# A policy for every target that never retries, so chain rules other than CL303 stand alone.
ONE_ATTEMPT = "resilience:\n  defaults: {timeout: 1s, retries: {attempts: 1}}\n"
ROUTED = "gateway:\n  routes:\n    - {match: {prefix: /}, service: web}\n"
POLICY = "resilience:\n  services:\n    api: {timeout: 1s}\n"

CASES: list[tuple[str, str, list[tuple[str, str]]]] = [
    (
        "clean: routed web calls api under a policy",
        manifest(f"  web: {APP}, calls: [api]}}\n  api: {APP}}}\n", ROUTED + POLICY),
        [],
    ),
    (
        "CL101 a cycle of three is named once, from its first service",
        manifest(
            f"  web: {APP}, calls: [a]}}\n  a: {APP}, calls: [b]}}\n"
            f"  b: {APP}, calls: [c]}}\n  c: {APP}, calls: [a]}}\n",
            ROUTED + ONE_ATTEMPT,
        ),
        [("CL101", "services.a.calls.b")],
    ),
    (
        "CL101 a service calling itself is a cycle",
        manifest(f"  web: {APP}, calls: [web]}}\n", ROUTED + ONE_ATTEMPT),
        [("CL101", "services.web.calls.web")],
    ),
    (
        "CL102 four hops is one too many; reported once, where the chain starts",
        manifest(
            f"  web: {APP}, calls: [a]}}\n  a: {APP}, calls: [b]}}\n"
            f"  b: {APP}, calls: [c]}}\n  c: {APP}, calls: [d]}}\n  d: {APP}}}\n",
            ROUTED + ONE_ATTEMPT,
        ),
        [("CL102", "services.web.calls.a")],
    ),
    (
        "CL102 not for three hops",
        manifest(
            f"  web: {APP}, calls: [a]}}\n  a: {APP}, calls: [b]}}\n"
            f"  b: {APP}, calls: [c]}}\n  c: {APP}}}\n",
            ROUTED + ONE_ATTEMPT,
        ),
        [],
    ),
    (
        "CL303 retries at two hops: 3 x 4 = 12 attempts at the end",
        manifest(
            f"  web: {APP}, calls: [a]}}\n  a: {APP}, calls: [b]}}\n  b: {APP}}}\n",
            ROUTED + "resilience:\n  services:\n    a: {retries: {attempts: 3}}\n"
            "    b: {retries: {attempts: 4}}\n",
        ),
        [("CL303", "services.web.calls.a")],
    ),
    (
        "CL303 not for 2 x 3 = 6 (ridehail's rides -> payments -> fakepay)",
        manifest(
            f"  web: {APP}, calls: [a]}}\n  a: {APP}, calls: [b]}}\n  b: {APP}}}\n",
            ROUTED + "resilience:\n  services:\n    a: {retries: {attempts: 2}}\n"
            "    b: {retries: {attempts: 3}}\n",
        ),
        [],
    ),
    (
        "CL103 a service with no route, caller, consumed topic or dependent",
        manifest(f"  web: {APP}}}\n  lonely: {APP}}}\n", ROUTED),
        [("CL103", "services.lonely")],
    ),
    (
        "CL103 not for a consumer, a dependency or the JWKS service",
        manifest(
            f"  web: {APP}, depends_on: [db]}}\n  worker: {APP}}}\n  db: {{command: x, "
            "readiness: {tcp: true}}\n  keys: {app: m.app:svc}\n",
            "gateway:\n  jwt:\n    main: {issuer: i, audiences: [a], jwks: {service: keys}}\n"
            "  routes:\n    - {match: {prefix: /}, service: web, auth: public}\n"
            "events:\n  topics:\n    job.done: {producers: [web], consumers: [worker]}\n",
        ),
        [],
    ),
    (
        "CL201/CL202 topics without consumer and without producer",
        manifest(
            f"  web: {APP}}}\n",
            ROUTED + "events:\n  topics:\n    audit.written: {producers: [web]}\n"
            "    orders.imported: {consumers: [web]}\n",
        ),
        [("CL201", "events.topics.audit.written"), ("CL202", "events.topics.orders.imported")],
    ),
    (
        "CL301 a declared call without a policy, once per target",
        manifest(
            f"  web: {APP}, calls: [api]}}\n  admin: {APP}, calls: [api]}}\n  api: {APP}}}\n",
            "gateway:\n  routes:\n    - {match: {prefix: /admin}, service: admin}\n"
            "    - {match: {prefix: /}, service: web}\n",
        ),
        [("CL301", "services.admin.calls.api")],
    ),
    (
        "CL301 not when defaults set a policy",
        manifest(
            f"  web: {APP}, calls: [api]}}\n  api: {APP}}}\n",
            ROUTED + "resilience:\n  defaults: {timeout: 2s}\n",
        ),
        [],
    ),
    (
        "CL302 a policy for a target nobody declares calling",
        manifest(f"  web: {APP}}}\n  api: {APP}}}\n", ROUTED + POLICY),
        [("CL103", "services.api"), ("CL302", "resilience.services.api")],
    ),
    (
        "CL401 a route to a command service without a readiness check",
        manifest("  web: {command: x}\n", ROUTED),
        [("CL401", "gateway.routes[0].service")],
    ),
    (
        "CL401 not with a readiness check",
        manifest("  web: {command: x, readiness: {tcp: true}}\n", ROUTED),
        [],
    ),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_rule(text: str, expected: list[tuple[str, str]]) -> None:
    """Each manifest yields exactly the findings its case names, in file order."""
    assert found(run(text)) == expected


SIZED = "resources: {cpu: 100m, memory: 128Mi}"

RESOURCE_CASES: list[tuple[str, str, list[tuple[str, str, Severity]]]] = [
    (
        "no service sized: the manifest is local-only, each service an info finding",
        manifest(f"  web: {APP}}}\n  api: {APP}, replicas: 0}}\n", ROUTED),
        [
            ("CL601", "services.web", Severity.INFO),
            ("CL601", "services.api", Severity.INFO),
        ],
    ),
    (
        "one service sized: the others are warnings (an oversight, not a choice)",
        manifest(f"  web: {APP}, {SIZED}}}\n  api: {APP}}}\n", ROUTED),
        [("CL601", "services.api", Severity.WARNING)],
    ),
    (
        "half sized: the missing half is named, at resources",
        manifest(f"  web: {APP}, resources: {{cpu: 1}}}}\n  api: {APP}, {SIZED}}}\n", ROUTED),
        [("CL601", "services.web.resources", Severity.WARNING)],
    ),
    (
        "an empty resources: is not sizing",
        manifest(f"  web: {APP}, resources: {{}}}}\n", ROUTED),
        [("CL601", "services.web.resources", Severity.INFO)],
    ),
    (
        "every service sized: nothing",
        manifest(f"  web: {APP}, {SIZED}}}\n  api: {APP}, {SIZED}}}\n", ROUTED),
        [],
    ),
]


@pytest.mark.parametrize(
    ("text", "expected"),
    [c[1:] for c in RESOURCE_CASES],
    ids=[c[0] for c in RESOURCE_CASES],
)
def test_missing_resources(text: str, expected: list[tuple[str, str, Severity]]) -> None:
    """CL601 names every service without cpu and memory, at the service (or its
    resources:); a warning once the manifest sizes any service, else info."""
    report = run(text)
    got = [
        (f.rule.id, format_path(f.diagnostic.path), f.severity)
        for f in report.findings
        if f.rule.id == "CL601"
    ]
    assert sorted(got) == sorted(expected)


def test_missing_resources_says_what_is_missing_and_what_to_write() -> None:
    """The message names the missing half; the hint gives a resources: line."""
    text = manifest(
        f"  web: {APP}, resources: {{cpu: 1}}, calls: [api]}}\n  api: {APP}, {SIZED}}}\n",
        ROUTED + POLICY,
    )
    [finding] = run(text).findings
    assert finding.diagnostic.message == "web sets no memory in resources:"
    assert "resources: {cpu:" in (finding.diagnostic.hint or "")
    assert (finding.diagnostic.line, finding.diagnostic.column) == (3, 25)  # resources


def test_info_never_fails_not_even_strict() -> None:
    """Info findings are reported and counted but exit 0, with --strict too."""
    report = run(manifest(f"  web: {APP}}}\n", ROUTED))
    assert [f.severity for f in report.findings] == [Severity.INFO]
    assert (report.errors, report.warnings, report.infos) == (0, 0, 1)
    assert report.exit_code(strict=True) == 0
    assert report.summary() == "0 errors, 0 warnings in corral.yaml (1 info)"
    assert report.to_json()["info"] == 1
    assert report.to_json()["findings"][0]["severity"] == "info"


def test_every_finding_has_a_location_message_and_hint() -> None:
    """A finding names file, line, column, key path, message and hint (the cycle: named)."""
    [finding] = flagged(run(CASES[1][1]))
    d = finding.diagnostic
    assert (d.file, d.line, d.column) == ("corral.yaml", 4, 31)
    assert d.message == "synchronous call cycle: a -> b -> c -> a"
    assert d.hint
    assert finding.services == ("a", "b", "c")
    assert str(finding).startswith(
        "corral.yaml:4:31: CL101 call-cycle (error) services.a.calls.b: synchronous call cycle"
    )


def test_the_deep_chain_says_why_it_matters() -> None:
    """The chain is named and its hint puts numbers on latency and availability."""
    [finding] = flagged(run(CASES[3][1]))
    assert finding.diagnostic.message.endswith("web -> a -> b -> c -> d")
    assert "99.5%" in (finding.diagnostic.hint or "")
    assert found(run(CASES[3][1], max_call_depth=4)) == []


def test_a_service_silences_a_rule_for_itself() -> None:
    """lint.ignore (by name or id) drops that service's findings, counted as silenced;
    an unknown rule is a located warning with a did-you-mean."""
    text = manifest(
        f"  web: {APP}}}\n  cron: {APP}, lint: {{ignore: [unreachable-service]}}}}\n"
        f"  batch: {APP}, lint: {{ignore: [CL103, unreachable-servise]}}}}\n",
        ROUTED,
    )
    report = run(text)
    assert found(report) == [("CL002", "services.batch.lint.ignore[1]")]
    assert flagged(report)[0].diagnostic.hint == "did you mean 'unreachable-service'?"
    assert report.silenced == 2


def test_a_shared_database_is_reported_once_under_its_rule() -> None:
    """A manifest error that is also a rule (shared database) comes back once, as CL501;
    other manifest errors as CL001; the report fails."""
    report = lint_target(ROOT / "tests/manifest/corpus/database_shared.yaml")
    assert [(f.rule.id, f.severity) for f in report.findings] == [("CL501", Severity.ERROR)]
    broken = lint_target(ROOT / "tests/manifest/corpus/unknown_key_replica.yaml")
    assert [f.rule.id for f in broken.findings] == ["CL001"]
    assert broken.exit_code() == 1


def test_rules_have_unique_stable_ids_and_names() -> None:
    """Ids and names are unique and each resolves back to its rule."""
    assert len({r.id for r in RULES}) == len({r.name for r in RULES}) == len(RULES)
    assert all(rule_named(r.id) is r and rule_named(r.name) is r for r in RULES)


def test_every_rule_is_documented() -> None:
    """docs/lint.md has a section for every rule id and name."""
    text = (ROOT / "docs/lint.md").read_text()
    assert all(f"{r.id} `{r.name}`" in text for r in RULES)


@pytest.mark.parametrize(
    ("path", "environment"),
    [("examples/hello", None), ("examples/ridehail", None), ("examples/ridehail", "postgres")],
)
def test_the_examples_lint_clean(path: str, environment: str | None) -> None:
    """The examples have no error or warning (ridehail's PostgreSQL overlay merged too);
    the only findings allowed are CL601 info (no service sized: local-only)."""
    report = lint_target(ROOT / path, environment=environment)
    assert [f for f in report.findings if f.severity is not Severity.INFO] == []
    assert {f.rule.id for f in report.findings} <= {"CL601"}
    assert report.silenced == 0


def test_cli_exit_codes_and_json(tmp_path: Path) -> None:
    """Warnings exit 0 (1 with --strict), errors 1; --format json carries every field."""
    warned = tmp_path / "warned.yaml"
    warned.write_text(manifest(f"  web: {APP}, {SIZED}}}\n  lonely: {APP}, {SIZED}}}\n", ROUTED))
    runner = CliRunner()
    text = runner.invoke(app, ["lint", str(warned)])
    assert text.exit_code == 0, text.output
    assert "CL103 unreachable-service (warning) services.lonely" in text.output
    assert "0 errors, 1 warning" in text.output
    assert runner.invoke(app, ["lint", str(warned), "--strict"]).exit_code == 1
    out = runner.invoke(app, ["lint", "-f", str(warned), "--format", "json"])
    assert out.exit_code == 0
    data = json.loads(out.output)
    assert data["warnings"] == 1
    assert data["findings"][0]["rule"] == "CL103"
    assert set(data["findings"][0]) == {
        "rule", "name", "severity", "file", "line", "column", "path", "message", "hint",
        "services",
    }  # fmt: skip
    broken = runner.invoke(app, ["lint", str(ROOT / "tests/manifest/corpus/cycle_of_two.yaml")])
    assert broken.exit_code == 1
    assert "CL001 invalid-manifest (error)" in broken.output
