"""The plan: the resolved system (instances, ports, environment, dependency order).

Pure functions from a validated manifest; every renderer and the runtime read the
Plan, never the YAML. See ``resolve``.
"""

from corral.plan._diff import PlanDiff, diff_plans
from corral.plan._events import EventsPlan, TopicPlan
from corral.plan._gateway import AuthPlan, ClusterPlan, GatewayPlan, ProviderPlan, RoutePlan
from corral.plan._instances import (
    Endpoints,
    instance_environment,
    instance_id,
)
from corral.plan._model import (
    AutoscalePlan,
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
from corral.plan._resilience import DEFAULT_PLAN, ResiliencePlan, resilience_environment
from corral.plan._resolve import SERVE_MODULE, STATE_DIRNAME, find_cycle, resolve, start_order

__all__ = [
    "DEFAULT_PLAN",
    "SERVE_MODULE",
    "STATE_DIRNAME",
    "AuthPlan",
    "AutoscalePlan",
    "CheckKind",
    "CheckPlan",
    "ClusterPlan",
    "DatabasePlan",
    "Endpoints",
    "EventsPlan",
    "GatewayPlan",
    "Plan",
    "PlanDiff",
    "ProviderPlan",
    "ResiliencePlan",
    "RestartPlan",
    "RoutePlan",
    "SecretRef",
    "SecretSource",
    "ServicePlan",
    "TopicPlan",
    "diff_plans",
    "find_cycle",
    "instance_environment",
    "instance_id",
    "resilience_environment",
    "resolve",
    "start_order",
    "supervised_component",
]
