"""Every error the control plane raises on purpose derives from CorralError.

The CLI's ``main()`` turns a CorralError into ``error: <message>`` and an exit code; an
error class outside that tree would reach a user as a traceback. The SDK is exempt: it
imports nothing of the control plane (a service's errors are its own).
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import corral
from corral.errors import CorralError

# HTTP answers, not CLI errors: the API turns them into problem+json responses.
HTTP_PROBLEMS = {"corral.api._problems.ApiProblem"}
# Signals caught inside the module that raises them and turned into something else; none
# escapes to a user. A new entry needs that reason checked.
INTERNAL_SIGNALS = {
    "corral.api._gate._Gone": "the client hung up mid-body: the gate drops the request",
    "corral.api._gate._TooLarge": "answered as a 413 problem by the gate",
    "corral.api._logins.LoginRefused": "answered as a 401/429 problem by the login route",
    "corral.config._rollout.Refused": "becomes ConfigRejectedError with every problem",
    "corral.manifest._limits.Refused": "becomes a located Diagnostic of a ManifestError",
    "corral.runtime._forkserver.ForkUnavailable": "the process driver spawns the instance instead",
}


def control_plane_error_classes() -> list[type[BaseException]]:
    found: list[type[BaseException]] = []
    for module_info in pkgutil.walk_packages(corral.__path__, "corral."):
        if module_info.name.startswith("corral.sdk") or module_info.name.endswith("__main__"):
            continue
        module = importlib.import_module(module_info.name)
        for _, value in inspect.getmembers(module, inspect.isclass):
            if (
                issubclass(value, Exception)
                and value.__module__ == module.__name__
                and value is not CorralError
            ):
                found.append(value)
    return found


def qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def test_the_walk_finds_the_known_errors() -> None:
    names = {qualified(cls) for cls in control_plane_error_classes()}
    assert "corral.manifest._diagnostics.ManifestError" in names
    assert "corral.runtime.errors.StartError" in names


def test_every_control_plane_error_is_a_corral_error() -> None:
    outside = sorted(
        qualified(cls)
        for cls in control_plane_error_classes()
        if not issubclass(cls, CorralError)
        and qualified(cls) not in INTERNAL_SIGNALS
        and not any(qualified(base) in HTTP_PROBLEMS for base in cls.__mro__)
    )
    assert outside == []
