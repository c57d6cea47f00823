"""A chaos experiment as data: the hypothesis, the method, the rollbacks (pure models).

The shape follows Chaos Toolkit's (steady-state hypothesis, method, rollbacks; see
docs/chaos.md for why Corral runs its own), in the manifest's spelling (snake_case,
durations such as ``10s``), and every model refuses unknown keys so a typo is an error
with its line, not a probe that silently checks nothing::

    title: matching paused, rides wait then match
    hypothesis:
      probes:
        - {type: ready}
        - {type: error-rate, target: gateway, max: 0.01, window: 30s}
    method:
      - {action: pause, target: matching, duration: 10s}
    rollbacks:
      - {action: command, run: [python, -m, ridehail_cli, heal]}
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from corral.manifest import parse_duration

Duration = Annotated[float, BeforeValidator(parse_duration)]
"""Seconds, written as ``500ms``, ``2s``, ``1m`` or a bare number."""

MAX_FAULT_SECONDS = 3600.0
"""One fault lasts an hour at most, as ``corral chaos`` allows (forgotten chaos is an
outage)."""
MAX_EXPERIMENT_SECONDS = 4 * 3600.0
"""The method's planned length, all steps and repeats counted."""
MAX_STEPS = 200
MAX_PROBES = 50
MAX_REPEAT = 1000

ProbeType = Literal["ready", "error-rate", "latency", "http", "command", "dead-letters"]
ActionKind = Literal[
    "kill", "pause", "cpu", "gateway", "nats", "database", "calls", "wait", "command", "parallel"
]
NatsMode = Literal["kill", "restart", "pause"]
Quantile = Literal["p50", "p95", "p99"]

_Strict = ConfigDict(extra="forbid", frozen=True)

# Which optional keys each kind takes (besides its kind and ``name``): anything else set
# is a mistake worth a line, such as a ``duration`` on a kill.
_PROBE_KEYS: dict[str, set[str]] = {
    "ready": {"services"},
    "error-rate": {"target", "route", "max", "window"},
    "latency": {"target", "route", "max", "window", "quantile"},
    "http": {"url", "status", "body_contains", "headers", "timeout"},
    "command": {"run", "exit", "timeout", "cwd"},
    "dead-letters": {"max"},
}
_PROBE_NEEDS: dict[str, set[str]] = {
    "error-rate": {"target", "max"},
    "latency": {"target", "max"},
    "http": {"url"},
    "command": {"run"},
    "dead-letters": {"max"},
}
_ACTION_KEYS: dict[str, set[str]] = {
    "kill": {"target", "repeat", "every", "start_after"},
    "pause": {"target", "duration", "repeat", "every", "start_after"},
    "cpu": {"target", "duration", "percent", "start_after"},
    "gateway": {"target", "duration", "percent", "abort", "delay", "start_after"},
    "nats": {"mode", "duration", "start_after"},
    "database": {"target", "duration", "start_after"},
    "calls": {"target", "caller", "duration", "percent", "abort", "delay", "start_after"},
    "wait": {"duration"},
    "command": {"run", "timeout", "background", "cwd", "start_after"},
    "parallel": {"steps"},
}
_ACTION_NEEDS: dict[str, set[str]] = {
    "kill": {"target"},
    "pause": {"target", "duration"},
    "cpu": {"target", "duration", "percent"},
    "gateway": {"target", "duration"},
    "nats": {"mode"},
    "database": {"target", "duration"},
    "calls": {"target", "caller", "duration"},
    "wait": {"duration"},
    "command": {"run"},
    "parallel": {"steps"},
}


def _check_keys(
    kind: str, given: set[str], allowed: dict[str, set[str]], needs: dict[str, set[str]]
) -> None:
    extra = sorted(given - allowed[kind] - {"name"})
    if extra:
        raise ValueError(f"{kind!r} does not take {', '.join(extra)}")
    missing = sorted(needs.get(kind, set()) - given)
    if missing:
        raise ValueError(f"{kind!r} needs {', '.join(missing)}")


class Probe(BaseModel):
    """One observation with its tolerance; it holds or it does not."""

    model_config = _Strict

    type: ProbeType
    name: str | None = None
    target: str | None = Field(
        default=None, description="A service, or `gateway` for the edge as users see it."
    )
    route: str | None = Field(default=None, description="One route, e.g. `GET /rides/{id}`.")
    max: Duration | None = Field(
        default=None,
        ge=0,
        description="The tolerance: a fraction (error rate), a duration such as 500ms "
        "(latency), or a count (dead letters).",
    )
    window: Duration = Field(default=30.0, gt=0, le=900)
    quantile: Quantile = "p99"
    services: list[str] | None = None
    url: str | None = Field(default=None, description="A URL, or a path on the gateway.")
    status: int | list[int] = 200
    body_contains: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    run: list[str] | None = Field(
        default=None, min_length=1, description="argv; a first word `python` is corral's own."
    )
    cwd: str | None = Field(default=None, description="Relative to the experiment's folder.")
    exit: int = 0
    timeout: Duration = Field(default=30.0, gt=0, le=600)

    @model_validator(mode="after")
    def _keys(self) -> Probe:
        _check_keys(self.type, set(self.model_fields_set) - {"type"}, _PROBE_KEYS, _PROBE_NEEDS)
        if self.type == "error-rate" and self.max is not None and self.max > 1:
            raise ValueError("an error rate's max is a fraction between 0 and 1 (0.01 is 1%)")
        return self

    @property
    def label(self) -> str:
        """What reports call it: its name, or a description made from its keys."""
        if self.name:
            return self.name
        match self.type:
            case "ready":
                return f"ready: {', '.join(self.services) if self.services else 'every instance'}"
            case "error-rate":
                return f"error rate of {self.target}{_route(self.route)} <= {self.max:g}"
            case "latency":
                return f"{self.quantile} of {self.target}{_route(self.route)} <= {self.max:g}s"
            case "http":
                return f"http {self.url} -> {self.status}"
            case "command":
                return f"command {' '.join(self.run or [])!r} exits {self.exit}"
            case _:
                return f"dead letters <= {self.max:g}"


def _route(route: str | None) -> str:
    return f" {route}" if route else ""


class Hypothesis(BaseModel):
    """What "steady" means: every probe holds. Checked before the method, after it
    (retried until it holds or ``recover_within`` passes), and during it when asked."""

    model_config = _Strict

    title: str | None = None
    probes: list[Probe] = Field(min_length=1, max_length=MAX_PROBES)
    during: bool = Field(default=False, description="Also check while the faults act.")
    every: Duration = Field(default=2.0, ge=0.1, le=600, description="How often, during.")
    recover_within: Duration = Field(
        default=30.0, ge=0, le=MAX_FAULT_SECONDS, description="After: time to heal."
    )


class Step(BaseModel):
    """One action of the method (or of the rollbacks)."""

    model_config = _Strict

    action: ActionKind
    name: str | None = None
    target: str | None = None
    caller: str | None = None
    duration: Duration | None = Field(default=None, gt=0, le=MAX_FAULT_SECONDS)
    repeat: int = Field(default=1, ge=1, le=MAX_REPEAT)
    every: Duration = Field(default=0.0, ge=0, le=MAX_FAULT_SECONDS)
    percent: int = Field(default=100, ge=1, le=100)
    abort: int | None = Field(default=None, ge=200, le=599)
    delay: Duration | None = Field(default=None, gt=0, le=60)
    mode: NatsMode | None = None
    run: list[str] | None = Field(default=None, min_length=1)
    cwd: str | None = None
    timeout: Duration = Field(default=60.0, gt=0, le=MAX_FAULT_SECONDS)
    start_after: Duration = Field(
        default=0.0, ge=0, le=MAX_FAULT_SECONDS, description="Wait this long first."
    )
    background: bool = False
    steps: list[Step] | None = Field(default=None, min_length=1, max_length=MAX_STEPS)

    @model_validator(mode="after")
    def _keys(self) -> Step:
        _check_keys(
            self.action, set(self.model_fields_set) - {"action"}, _ACTION_KEYS, _ACTION_NEEDS
        )
        if self.action in ("gateway", "calls") and self.abort is None and self.delay is None:
            raise ValueError(f"{self.action!r} needs abort (a status), delay, or both")
        if self.action == "nats" and self.mode == "pause" and self.duration is None:
            raise ValueError("a NATS pause needs a duration")
        if self.action == "nats" and self.mode != "pause" and self.duration is not None:
            raise ValueError(f"a NATS {self.mode} takes no duration (it is over at once)")
        if self.action == "parallel" and any(s.action == "parallel" for s in self.steps or ()):
            raise ValueError("parallel steps do not nest; list them in one parallel")
        if self.action == "cpu" and self.percent > 99:
            raise ValueError("a cpu throttle takes 1 to 99 percent of the time (100 is a pause)")
        if self.repeat > 1 and self.action not in ("kill", "pause"):
            raise ValueError("only kill and pause repeat")
        return self

    @property
    def planned(self) -> float:
        """Seconds this step takes as planned (a repeat waits ``every`` in between)."""
        if self.action == "parallel":
            return max((s.planned for s in self.steps or ()), default=0.0)
        own = self.duration or 0.0
        if self.action == "command" and not self.background:
            own = self.timeout
        return self.start_after + self.repeat * own + (self.repeat - 1) * self.every

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        target = f" {self.target}" if self.target else ""
        if self.action == "nats":
            target = f" {self.mode}"
        if self.action == "calls":
            target = f" {self.caller} -> {self.target}"
        if self.action == "command":
            target = f" {' '.join(self.run or [])!r}"
        times = f" x{self.repeat} every {self.every:g}s" if self.repeat > 1 else ""
        lasting = f" for {self.duration:g}s" if self.duration else ""
        return f"{self.action}{target}{lasting}{times}"


class Experiment(BaseModel):
    """A whole experiment file."""

    model_config = _Strict

    title: str = Field(min_length=1, max_length=200)
    description: str | None = None
    hypothesis: Hypothesis
    method: list[Step] = Field(min_length=1, max_length=MAX_STEPS)
    rollbacks: list[Step] = Field(default_factory=list, max_length=MAX_STEPS)

    @model_validator(mode="after")
    def _bounded(self) -> Experiment:
        planned = sum(step.planned for step in self.method)
        if planned > MAX_EXPERIMENT_SECONDS:
            raise ValueError(
                f"the method is planned to last {planned:g}s, over the "
                f"{MAX_EXPERIMENT_SECONDS:g}s limit"
            )
        for step in self.rollbacks:
            if step.action not in ("command", "wait"):
                raise ValueError(
                    f"a rollback is a command or a wait, not {step.action!r} (faults are "
                    "always ended after the method anyway)"
                )
        return self
