"""The plan: the resolved system (instances, ports, environment, dependency order).

Pure functions from a validated manifest; every renderer and the runtime read the
Plan, never the YAML. See ``resolve``.
"""

from corral.plan._events import EventsPlan
from corral.plan._gateway import GatewayPlan
from corral.plan._instances import (
    Endpoints,
    instance_environment,
    instance_id,
)
from corral.plan._model import (
    CheckKind,
    CheckPlan,
    DatabasePlan,
    Plan,
    RestartPlan,
    SecretRef,
    SecretSource,
    ServicePlan,
    supervised_component,
)
from corral.plan._resilience import ResiliencePlan, resilience_environment
from corral.plan._resolve import STATE_DIRNAME, find_cycle, resolve, start_order

__all__ = [
    "STATE_DIRNAME",
    "CheckKind",
    "CheckPlan",
    "DatabasePlan",
    "Endpoints",
    "EventsPlan",
    "GatewayPlan",
    "Plan",
    "ResiliencePlan",
    "RestartPlan",
    "SecretRef",
    "SecretSource",
    "ServicePlan",
    "find_cycle",
    "instance_environment",
    "instance_id",
    "resilience_environment",
    "resolve",
    "start_order",
    "supervised_component",
]
