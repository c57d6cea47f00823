"""Running every rule over a manifest: findings, silencing, and broken manifests. Pure
apart from :func:`lint_target`, which reads the file (through ``corral.manifest.load``)."""

from __future__ import annotations

from pathlib import Path

from corral.lint._model import Finding, Report, Rule
from corral.lint._rules import (
    CHECKS,
    DEFAULT_MAX_CALL_DEPTH,
    INVALID_MANIFEST,
    RULES,
    UNKNOWN_RULE,
    Context,
)
from corral.manifest import Manifest, ManifestError, closest_hint, load
from corral.plan import Plan, resolve

_BY_KEY: dict[str, Rule] = {key: rule for rule in RULES for key in (rule.id, rule.name)}


def rule_named(key: str) -> Rule | None:
    """The rule with this id (``CL101``) or name (``call-cycle``), any case for the id."""
    return _BY_KEY.get(key) or _BY_KEY.get(key.upper())


def lint(manifest: Manifest, plan: Plan, *, max_call_depth: int = DEFAULT_MAX_CALL_DEPTH) -> Report:
    """Every rule's findings for a valid manifest, minus those its services silence."""
    ctx = Context(manifest, plan, max_call_depth=max_call_depth)
    findings = [finding for check in CHECKS for finding in check(ctx)]
    ignored: dict[str, set[str]] = {}
    for name, service in sorted(manifest.spec.services.items()):
        for index, key in enumerate(service.lint.ignore):
            rule = rule_named(key)
            if rule is None:
                findings.append(
                    ctx.finding(
                        UNKNOWN_RULE,
                        ("services", name, "lint", "ignore", index),
                        f"no lint rule is called {key!r}",
                        closest_hint(key, sorted(_BY_KEY), "see `corral lint --rules`"),
                        (),
                    )
                )
            else:
                ignored.setdefault(name, set()).add(rule.id)
    kept = [
        f
        for f in findings
        if f.rule.from_manifest or not any(f.rule.id in ignored.get(s, ()) for s in f.services)
    ]
    return Report(manifest.source.file, tuple(sorted(kept)), silenced=len(findings) - len(kept))


def from_manifest_error(error: ManifestError) -> Report:
    """A manifest that cannot be used: each of its problems as a finding, under the rule
    it also is (a shared database is CL501, once) or CL001."""
    findings = tuple(
        Finding(diagnostic, rule_named(diagnostic.rule or "") or INVALID_MANIFEST)
        for diagnostic in error.diagnostics
    )
    return Report(error.diagnostics[0].file, findings)


def lint_target(
    target: Path | str | None,
    *,
    environment: str | None = None,
    max_call_depth: int = DEFAULT_MAX_CALL_DEPTH,
) -> Report:
    """Load (with an environment's overlay merged), resolve and lint a manifest file (or
    its folder); never raises for a bad one."""
    try:
        manifest = load(target, environment=environment)
        # The interpreter is never run here; any name keeps the plan complete.
        plan = resolve(manifest, python="python3")
    except ManifestError as error:
        return from_manifest_error(error)
    return lint(manifest, plan, max_call_depth=max_call_depth)
