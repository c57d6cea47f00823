"""Secrets: reading their values where the manifest says they are, and fingerprints.

Values are read by the control plane (``corral up``, ``corral config apply``), kept in its
memory and handed to instances in their environment; nothing else ever holds them. What
history, status and the API show is a fingerprint: HMAC-SHA256 of the value under a
random key kept in ``.corral/config/fingerprint.key`` (mode 0600). Keyed, because a plain
hash of a short or common secret gives it away to anyone who tries candidates; with the
key apart, a history file alone reveals nothing, and equal fingerprints still tell that
a value did not change.
"""

from __future__ import annotations

import getpass
import hashlib
import hmac
import os
import secrets
from collections.abc import Mapping
from pathlib import Path

from corral.manifest import Diagnostic, Manifest, ManifestError
from corral.plan import Plan, SecretRef, SecretSource

FINGERPRINT_DIGITS = 12
"""48 bits: plenty to tell values apart in one system's history."""


class Fingerprints:
    """Keyed fingerprints (``fp:`` and 12 hex digits), the key created on first use."""

    def __init__(self, key_file: Path) -> None:
        self.key_file = key_file
        self._key: bytes | None = None

    def of(self, value: str) -> str:
        digest = hmac.new(self._load(), value.encode(), hashlib.sha256).hexdigest()
        return "fp:" + digest[:FINGERPRINT_DIGITS]

    def _load(self) -> bytes:
        if self._key is None:
            try:
                self._key = self.key_file.read_bytes()
            except FileNotFoundError:
                self.key_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                key = secrets.token_bytes(32)
                try:
                    fd = os.open(self.key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                except FileExistsError:  # made by someone else meanwhile: theirs counts
                    self._key = self.key_file.read_bytes()
                else:
                    with os.fdopen(fd, "wb") as handle:
                        handle.write(key)
                    self._key = key
        return self._key


def read_secret(ref: SecretRef, environ: Mapping[str, str]) -> str:
    """The value behind ``ref``; LookupError or OSError saying why it cannot be read.
    A file's one trailing newline is not part of the value (editors and ``echo`` add it)."""
    if ref.source is SecretSource.ENV:
        if ref.name not in environ:
            raise LookupError(f"the environment variable {ref.name} is not set")
        return environ[ref.name]
    text = Path(ref.name).read_text(encoding="utf-8")
    return text.removesuffix("\n").removesuffix("\r")


def resolve_secrets(
    manifest: Manifest, plan: Plan, environ: Mapping[str, str]
) -> dict[str, dict[str, str]]:
    """Every service's secret values, or a ManifestError pointing at each reference that
    cannot be read (all of them at once)."""
    values: dict[str, dict[str, str]] = {}
    problems: list[Diagnostic] = []
    for name, service in plan.services.items():
        values[name] = {}
        for variable, ref in service.secrets.items():
            try:
                values[name][variable] = read_secret(ref, environ)
            except (LookupError, OSError, UnicodeDecodeError) as exc:
                reason = exc.args[0] if isinstance(exc, LookupError) else _why(exc)
                problems.append(
                    manifest.diagnostic(
                        ("services", name, "secrets", variable),
                        f"cannot read secret {variable} ({ref}): {reason}",
                    )
                )
    if problems:
        raise ManifestError(problems)
    return values


def _why(exc: OSError | UnicodeDecodeError) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return "the file is not UTF-8 text"
    return exc.strerror or str(exc)


def current_user() -> str:
    """Who is making a change, for the history: the login name, as the OS knows it."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (a container with a random uid)
        return f"uid {os.getuid()}"
