"""Errors of configuration management, one tree, context in attributes.

::

    ConfigError (builtins.Exception)
     ├── InvalidChangeError     a set/unset the model refuses before anything is written
     │    │                     (unknown service, reserved or secret variable, no override)
     │    └── UndeclaredSettingError  a set of a variable nobody declared (.service,
     │                          .keys, .suggestions, .declared)
     ├── UnknownVersionError    a version number the history does not have (.version)
     ├── VersionConflictError   compare-and-swap lost: the history moved on (.expected, .actual)
     ├── SecretUnavailableError a secret's reference cannot be read (.service, .variable)
     └── ConfigRejectedError    a service refused a new version, which was undone
                                (.service, .version, .restored, .problems)

They are user mistakes or refusals: the API answers them as problem+json and the CLI
prints them, never a traceback.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from corral.errors import CorralError


class ConfigError(CorralError):
    """Base of every error configuration management raises on purpose."""


class InvalidChangeError(ConfigError):
    """A change that cannot be made as asked (nothing was written)."""


class UndeclaredSettingError(InvalidChangeError):
    """``config set`` of variables no layer and no running instance declares: most often
    a typo, which would otherwise be kept silently and roll the service for nothing."""

    def __init__(
        self,
        service: str,
        keys: Sequence[str],
        suggestions: Mapping[str, Sequence[str]],
        declared: Sequence[str],
    ) -> None:
        self.service = service
        self.keys = tuple(keys)
        self.suggestions = {key: list(found) for key, found in suggestions.items()}
        self.declared = tuple(declared)
        lines = []
        for key in self.keys:
            close = self.suggestions.get(key)
            hint = f": did you mean {close[0]}?" if close else ""
            lines.append(f"{service} has no setting {key}{hint}")
        listing = ", ".join(self.declared) or "none"
        lines.append(f"settings of {service}: {listing}")
        lines.append(
            "a variable nobody declared yet is set with --new "
            '(API: "new": true); declare it in the manifest\'s env: to keep it'
        )
        super().__init__("\n".join(lines))


class UnknownVersionError(ConfigError, KeyError):
    def __init__(self, version: int, latest: int) -> None:
        self.version = version
        self.latest = latest
        known = f"versions 1-{latest}" if latest else "no versions yet"
        super().__init__(f"no configuration version {version} ({known})")

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class VersionConflictError(ConfigError):
    """Someone else committed first: the change was computed from an older version."""

    def __init__(self, expected: int, actual: int) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"the configuration is at version {actual}, not {expected}: "
            "it changed meanwhile; look at the new version and try again"
        )


class SecretUnavailableError(ConfigError):
    """A secret's value cannot be read from where the manifest says it is."""

    def __init__(self, service: str, variable: str, reason: str) -> None:
        self.service = service
        self.variable = variable
        self.reason = reason
        super().__init__(f"services.{service}.secrets.{variable}: {reason}")


class ConfigRejectedError(ConfigError):
    """A service refused a version (its settings failed validation, or its new instances
    did not become ready); the previous configuration was restored as ``restored``."""

    def __init__(self, service: str, version: int, restored: int, problems: Sequence[str]) -> None:
        self.service = service
        self.version = version
        self.restored = restored
        self.problems = tuple(problems)
        head = (
            f"{service} refused configuration version {version}; "
            f"version {restored} restores the previous configuration"
        )
        super().__init__("\n".join([head, *self.problems]))
