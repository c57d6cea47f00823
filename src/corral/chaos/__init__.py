"""Chaos experiments as data (``corral chaos run``): the model and its loader (pure),
probes' verdicts (pure), the runner, which acts through a :class:`Target` (the
control-plane API for the CLI; an in-memory fake in tests), and the record of runs."""

from corral.chaos._errors import ChaosError, Refusal
from corral.chaos._experiments import (
    ChaosExperiment,
    ChaosOverview,
    ChaosStopped,
    ExperimentKind,
    ExperimentState,
)
from corral.chaos._load import load, parse
from corral.chaos._model import MAX_FAULT_SECONDS, Experiment, Hypothesis, Probe, Step
from corral.chaos._record import RunStore, valid_id
from corral.chaos._report import Check, ProbeResult, Report, StepResult
from corral.chaos._runner import PreflightError, Runner, Target, preflight

__all__ = [
    "MAX_FAULT_SECONDS",
    "ChaosError",
    "ChaosExperiment",
    "ChaosOverview",
    "ChaosStopped",
    "Check",
    "Experiment",
    "ExperimentKind",
    "ExperimentState",
    "Hypothesis",
    "PreflightError",
    "Probe",
    "ProbeResult",
    "Refusal",
    "Report",
    "RunStore",
    "Runner",
    "Step",
    "StepResult",
    "Target",
    "load",
    "parse",
    "preflight",
    "valid_id",
]
