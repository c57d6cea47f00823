"""The vocabulary of ``corral lint``: rules, their severity, and findings. Pure."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from corral.manifest import Diagnostic, format_path


class Severity(StrEnum):
    ERROR = "error"
    """Exit 1: the architecture is broken (or the manifest cannot be used)."""
    WARNING = "warning"
    """Exit 0, unless ``--strict``: worth a look, may be intended."""
    INFO = "info"
    """Exit 0 always, ``--strict`` too: advice that matters only where the system is
    deployed (a rule reports info when the manifest shows it is not written for that)."""


@dataclass(frozen=True)
class Rule:
    """One architecture check. ``id`` and ``name`` are stable (they appear in manifests'
    ``lint.ignore`` lists and in CI logs), as ruff's are."""

    id: str
    name: str
    severity: Severity
    summary: str
    from_manifest: bool = False
    """A manifest error too: ``corral validate`` refuses it, lint reports it under this
    rule (once), and it cannot be silenced."""


@dataclass(frozen=True, order=True)
class Finding:
    """One problem found: where it is (the manifest line), what it is, what to do."""

    diagnostic: Diagnostic
    rule: Rule = field(compare=False)
    services: tuple[str, ...] = field(default=(), compare=False)
    """The services it is about; one of them listing the rule in ``lint.ignore``
    silences it."""
    level: Severity | None = field(default=None, compare=False)
    """This finding's severity when it is not the rule's own (CL601 on a manifest that
    sizes no service is info)."""

    @property
    def severity(self) -> Severity:
        return self.level or self.rule.severity

    def __str__(self) -> str:
        d = self.diagnostic
        text = (
            f"{d.file}:{d.line}:{d.column}: {self.rule.id} {self.rule.name} ({self.severity}) "
            f"{format_path(d.path)}: {d.message}"
        )
        return text + (f"\n    hint: {d.hint}" if d.hint else "")

    def to_json(self) -> dict[str, Any]:
        d = self.diagnostic
        return {
            "rule": self.rule.id,
            "name": self.rule.name,
            "severity": str(self.severity),
            "file": d.file,
            "line": d.line,
            "column": d.column,
            "path": format_path(d.path),
            "message": d.message,
            "hint": d.hint,
            "services": list(self.services),
        }


@dataclass(frozen=True)
class Report:
    """Every finding of one run, in file order, and the rules that ran."""

    file: str
    findings: tuple[Finding, ...]
    silenced: int = 0
    """Findings left out because a service's ``lint.ignore`` names their rule."""

    @property
    def errors(self) -> int:
        return sum(1 for f in self.findings if f.severity is Severity.ERROR)

    @property
    def warnings(self) -> int:
        return sum(1 for f in self.findings if f.severity is Severity.WARNING)

    @property
    def infos(self) -> int:
        return sum(1 for f in self.findings if f.severity is Severity.INFO)

    def exit_code(self, *, strict: bool = False) -> int:
        """1 on any error (or, when strict, any warning); else 0. Info never counts."""
        return 1 if self.errors or (strict and self.warnings) else 0

    def summary(self) -> str:
        def count(n: int, word: str) -> str:
            return f"{n} {word}{'s' if n != 1 else ''}"

        head = f"{count(self.errors, 'error')}, {count(self.warnings, 'warning')} in {self.file}"
        extra = [f"{self.infos} info"] if self.infos else []
        extra += [f"{self.silenced} silenced by lint.ignore"] if self.silenced else []
        return head + (f" ({'; '.join(extra)})" if extra else "")

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "errors": self.errors,
            "warnings": self.warnings,
            "info": self.infos,
            "silenced": self.silenced,
            "findings": [f.to_json() for f in self.findings],
        }
