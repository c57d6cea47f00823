"""The root of every error the control plane raises on purpose.

A :class:`CorralError` is a mistake or a state the person at the keyboard can fix (no
system running, a service name that does not exist, an instance that never became
ready). It carries a message written for that person, so the CLI's ``main()`` shows
every one of them the same way, in one place, without a traceback. Anything else that
escapes is a programming mistake and fails loudly.

::

    CorralError                      .message for people, .exit_code for the CLI
     ├── corral.runtime.errors.CorralRuntimeError   (also a RuntimeError)
     │    ├── StartError, UnknownServiceError, UnknownInstanceError,
     │    ├── NotRunningError        no system runs there (or it stopped answering)
     │    ├── ServiceStoppedError    a change that needs the service's instances
     │    └── AlreadyRunningError
     ├── corral.api.ApiError         the control-plane API answered with a problem
     ├── corral.manifest.ManifestError     every problem of a manifest, located
     ├── corral.config.ConfigError         a refused or impossible configuration change
     ├── corral.gateway.GatewayError       Envoy missing, or not ready in time
     ├── corral.broker BrokerError         nats-server missing or refusing its config
     ├── corral.runtime DatabaseSetupError a service's database could not be made
     ├── corral.export ExportError, OverwriteError
     ├── corral.telemetry OtlpError        an OTLP payload that cannot be decoded
     └── corral.cli UsageError       a malformed command line (exit 2)

Every control-plane package may import this module; the SDK does not (a service's
errors are its own, and the SDK imports nothing of the control plane).
"""

from __future__ import annotations

from typing import ClassVar


class CorralError(Exception):
    """A mistake or a state the user can fix: shown as ``error: <message>``."""

    exit_code: ClassVar[int] = 1
    """What ``corral`` exits with when this error ends a command."""

    @property
    def message(self) -> str:
        """What to show a person; may span lines (a subclass adds log lines, hints)."""
        return str(self)


__all__ = ["CorralError"]
