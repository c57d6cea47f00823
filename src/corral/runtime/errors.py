"""Errors the runtime raises, one tree, context in attributes.

::

    corral.errors.CorralError
     └── CorralRuntimeError (also builtins.RuntimeError)
          ├── StartError            an instance or component could not become ready
          │                         (.service, .instance, .reason, .log_tail)
          ├── UnknownServiceError   a service name that is not in the plan (.service, .known)
          ├── UnknownInstanceError  an instance id the registry does not have (.instance)
          ├── NotRunningError       the system is not running: an operation before ``up``
          │                         or after ``down``, or (raised by the API client) no
          │                         system runs for a manifest, or it stopped answering
          ├── ServiceStoppedError   a change that needs a service's instances, asked of a
          │                         stopped service (.service)
          └── AlreadyRunningError   another orchestrator runs the same state dir (.pid)

They are user-facing: the CLI and the control-plane API show ``error.message`` (for a
StartError, with the log tail) without a traceback. Programming mistakes are not wrapped.
"""

from __future__ import annotations

from collections.abc import Sequence

from corral.errors import CorralError


class CorralRuntimeError(CorralError, RuntimeError):
    """Base of every error the runtime raises on purpose."""


class StartError(CorralRuntimeError):
    """An instance (or a whole service) could not start or become ready."""

    def __init__(
        self,
        service: str,
        reason: str,
        *,
        instance: str | None = None,
        log_tail: Sequence[str] = (),
    ) -> None:
        self.service = service
        self.instance = instance
        self.reason = reason
        self.log_tail = tuple(log_tail)
        where = instance or service
        super().__init__(f"{where}: {reason}")

    def details(self) -> str:
        """The message followed by the instance's last log lines, for people."""
        if not self.log_tail:
            return str(self)
        lines = "\n".join(f"  | {line}" for line in self.log_tail)
        return f"{self}\nlast log lines of {self.instance or self.service}:\n{lines}"

    @property
    def message(self) -> str:
        return self.details()


class UnknownServiceError(CorralRuntimeError, KeyError):
    """A service name that the plan does not have."""

    def __init__(self, service: str, known: Sequence[str] = ()) -> None:
        self.service = service
        self.known = tuple(known)
        hint = f" (known: {', '.join(self.known)})" if self.known else ""
        super().__init__(f"unknown service {service!r}{hint}")

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class UnknownInstanceError(CorralRuntimeError, KeyError):
    """An instance id that no running slot has."""

    def __init__(self, instance: str, known: Sequence[str] = ()) -> None:
        self.instance = instance
        self.known = tuple(known)
        hint = f" (instances: {', '.join(self.known)})" if self.known else ""
        super().__init__(f"no instance {instance!r}{hint}")

    def __str__(self) -> str:
        return str(self.args[0])


class NotRunningError(CorralRuntimeError):
    """The operation needs a running system (call ``up`` first).

    One class for both sides: the orchestrator raises it for a change asked before ``up``
    or during ``down``; the API client raises it when no system runs for a manifest or
    its control plane does not answer."""


class ServiceStoppedError(CorralRuntimeError):
    """A change that needs the service's instances (a restart), asked of a service that
    has none: stopped, or scaled to 0. Refused rather than reported as done."""

    def __init__(self, service: str) -> None:
        self.service = service
        super().__init__(f"{service} is stopped: there is nothing to restart (start it instead)")


class AlreadyRunningError(CorralRuntimeError):
    """Another live orchestrator owns this state directory."""

    def __init__(self, pid: int, state_dir: str) -> None:
        self.pid = pid
        self.state_dir = state_dir
        super().__init__(
            f"another corral orchestrator (pid {pid}) is running this system "
            f"(state in {state_dir}); stop it first with `corral down`"
        )
