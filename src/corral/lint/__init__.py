"""``corral lint``: architecture checks over a manifest and its plan (single
responsibility, design for failure).

Pure: :func:`lint` reads a validated manifest and its plan and returns a :class:`Report`;
:func:`lint_target` also loads the file and turns a manifest that cannot be used into
findings. Every rule has a stable id and name (see :data:`RULES` and docs/lint.md); a
service silences one for itself with ``lint: {ignore: [rule]}``.
"""

from corral.lint._model import Finding, Report, Rule, Severity
from corral.lint._rules import DEFAULT_MAX_CALL_DEPTH, RULES
from corral.lint._run import from_manifest_error, lint, lint_target, rule_named

__all__ = [
    "DEFAULT_MAX_CALL_DEPTH",
    "RULES",
    "Finding",
    "Report",
    "Rule",
    "Severity",
    "from_manifest_error",
    "lint",
    "lint_target",
    "rule_named",
]
