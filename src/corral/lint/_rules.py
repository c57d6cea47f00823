"""The rules of ``corral lint``, each a pure function of the manifest and its plan.

Ids group rules by what they look at: CL0xx the manifest itself, CL1xx synchronous calls,
CL2xx events, CL3xx resilience, CL4xx the gateway, CL5xx data, CL6xx deployment.
docs/lint.md explains every rule with an example; keep the two in step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from corral.lint._graph import Graph, best_chain, cycles, longest_chain
from corral.lint._model import Finding, Rule, Severity
from corral.manifest import EVENT_PARTY_RULE, SHARED_DATABASE_RULE, KeyPath, Manifest, PolicySpec
from corral.plan import DEFAULT_PLAN, Plan

ERROR, WARNING, INFO = Severity.ERROR, Severity.WARNING, Severity.INFO

INVALID_MANIFEST = Rule(
    "CL001", "invalid-manifest", ERROR, "The manifest has an error (`corral validate`).", True
)
UNKNOWN_RULE = Rule("CL002", "unknown-rule", WARNING, "lint.ignore names no rule.")
CALL_CYCLE = Rule("CL101", "call-cycle", ERROR, "Services call each other in a loop.")
CALL_CHAIN_TOO_DEEP = Rule(
    "CL102", "call-chain-too-deep", WARNING, "A chain of synchronous calls is too long."
)
UNREACHABLE_SERVICE = Rule(
    "CL103", "unreachable-service", WARNING, "No route, caller, topic or dependent reaches it."
)
TOPIC_WITHOUT_CONSUMER = Rule("CL201", "topic-without-consumer", WARNING, "Nobody reads it.")
TOPIC_WITHOUT_PRODUCER = Rule("CL202", "topic-without-producer", WARNING, "Nobody writes it.")
EVENT_PARTY_NOT_A_SERVICE = Rule(
    "CL203", EVENT_PARTY_RULE, ERROR, "A producer or consumer is not a service.", True
)
CALL_WITHOUT_POLICY = Rule(
    "CL301", "call-without-policy", WARNING, "A call target has no resilience policy."
)
RETRY_AMPLIFICATION = Rule(
    "CL303", "retry-amplification", WARNING, "Retries at every hop multiply at the end."
)
POLICY_WITHOUT_CALLER = Rule(
    "CL302", "policy-without-caller", WARNING, "A resilience policy for a target nobody calls."
)
ROUTE_WITHOUT_READINESS = Rule(
    "CL401", "route-without-readiness", WARNING, "The gateway routes to a service with no check."
)
SHARED_DATABASE = Rule(
    "CL501", SHARED_DATABASE_RULE, ERROR, "Two services share one database.", True
)
MISSING_RESOURCES = Rule(
    "CL601",
    "missing-resources",
    WARNING,
    "A service sets no cpu or memory (info while no service does).",
)

DEFAULT_MAX_CALL_DEPTH = 3
"""Synchronous hops one request may take (gateway -> a -> b -> c -> d is 3)."""
MAX_AMPLIFICATION = 10
"""Attempts one request may make at the end of a chain when every hop retries."""


@dataclass(frozen=True)
class Context:
    """What every rule reads: the validated manifest (for locations), its plan, options."""

    manifest: Manifest
    plan: Plan
    max_call_depth: int = DEFAULT_MAX_CALL_DEPTH

    @property
    def graph(self) -> Graph:
        return {name: s.calls or () for name, s in self.plan.services.items()}

    def finding(
        self,
        rule: Rule,
        path: KeyPath,
        message: str,
        hint: str,
        services: tuple[str, ...],
        *,
        level: Severity | None = None,
    ) -> Finding:
        return Finding(self.manifest.diagnostic(path, message, hint), rule, services, level)


Check = Callable[[Context], Iterator[Finding]]


def call_cycles(ctx: Context) -> Iterator[Finding]:
    for cycle in cycles(ctx.graph):
        yield ctx.finding(
            CALL_CYCLE,
            ("services", cycle[0], "calls", cycle[1]),
            "synchronous call cycle: " + " -> ".join(cycle),
            "a request can go round the loop until a timeout, and one slow service stalls "
            "all of them: make one of these calls an event, or merge the services",
            tuple(sorted(set(cycle))),
        )


def _chain_starts(ctx: Context) -> Iterator[str]:
    """Services nothing declares calling: a chain is reported once, from where it starts."""
    return (name for name in sorted(ctx.plan.services) if not ctx.plan.callers(name))


def deep_chains(ctx: Context) -> Iterator[Finding]:
    for name in _chain_starts(ctx):
        chain = longest_chain(ctx.graph, name)
        hops = len(chain) - 1
        if hops <= ctx.max_call_depth:
            continue
        availability = 100 * 0.999 ** len(chain)
        yield ctx.finding(
            CALL_CHAIN_TOO_DEEP,
            ("services", chain[0], "calls", chain[1]),
            f"{hops} synchronous calls in a row (more than {ctx.max_call_depth}): "
            + " -> ".join(chain),
            "latencies add up and availabilities multiply along a chain (each of these "
            f"{len(chain)} services at 99.9% leaves {availability:.1f}% for the request): "
            "make the later steps events, or let one service answer from its own data",
            tuple(chain),
        )


def retry_amplification(ctx: Context) -> Iterator[Finding]:
    resilience = ctx.plan.resilience or DEFAULT_PLAN

    def attempts(chain: Sequence[str]) -> float:
        return math.prod(resilience.policy(t).retries.attempts for t in chain[1:])

    for name in _chain_starts(ctx):
        chain = best_chain(ctx.graph, name, attempts)
        total = int(attempts(chain))
        if total <= MAX_AMPLIFICATION:
            continue
        each = " x ".join(str(resilience.policy(t).retries.attempts) for t in chain[1:])
        yield ctx.finding(
            RETRY_AMPLIFICATION,
            ("services", chain[0], "calls", chain[1]),
            f"one request can become {total} attempts at {chain[-1]!r} ({each}): "
            + " -> ".join(chain),
            "when the last service is slow every layer retries it, and the load multiplies "
            "just when it can least take it: retry at one layer only (retries: "
            "{attempts: 1} for the others), or keep the retry budgets tight",
            tuple(chain),
        )


def unreachable_services(ctx: Context) -> Iterator[Finding]:
    plan = ctx.plan
    reached: set[str] = set()
    if plan.gateway is not None:
        reached |= {route.service for route in plan.gateway.routes}
        reached |= {p.jwks_service for p in plan.gateway.providers if p.jwks_service}
    if plan.events is not None:
        reached |= {name for topic in plan.events.topics for name in topic.consumers}
    for service in plan.services.values():
        reached |= set(service.calls or ()) | set(service.depends_on)
    for name in sorted(set(plan.services) - reached):
        if plan.services[name].replicas == 0:
            continue
        yield ctx.finding(
            UNREACHABLE_SERVICE,
            ("services", name),
            f"nothing reaches service {name!r}: no gateway route, declared caller, "
            "consumed topic or dependent",
            f"route to it, list it in a caller's calls:, or remove it; a service that "
            f"only works on a timer can say lint: {{ignore: [{UNREACHABLE_SERVICE.name}]}}",
            (name,),
        )


def idle_topics(ctx: Context) -> Iterator[Finding]:
    if ctx.plan.events is None:
        return
    for topic in ctx.plan.events.topics:
        path = ("events", "topics", topic.name)
        if not topic.consumers:
            yield ctx.finding(
                TOPIC_WITHOUT_CONSUMER,
                path,
                f"topic {topic.name!r} has no consumer",
                "list the services that read it under consumers:, or drop the topic: "
                "events nobody reads only fill the stream",
                topic.producers,
            )
        if not topic.producers:
            yield ctx.finding(
                TOPIC_WITHOUT_PRODUCER,
                path,
                f"topic {topic.name!r} has no producer",
                "list the services that publish it under producers:, or drop the topic: "
                "its consumers wait for events that never come",
                topic.consumers,
            )


def resilience_coverage(ctx: Context) -> Iterator[Finding]:
    spec = ctx.manifest.spec.resilience
    policies = set(spec.services) if spec is not None else set()
    defaults_set = spec is not None and spec.defaults != PolicySpec()
    for target in sorted(set(ctx.plan.services)):
        callers = ctx.plan.callers(target)
        if callers and target not in policies and not defaults_set:
            yield ctx.finding(
                CALL_WITHOUT_POLICY,
                ("services", callers[0], "calls", target),
                f"calls to {target!r} (from {', '.join(callers)}) have no resilience policy",
                f"they get the built-in one (10s timeout, 3 attempts, breaker after 5 "
                f"failures); set resilience.services.{target} to what these calls can afford",
                callers,
            )
    for target in sorted(policies):
        if target in ctx.plan.services and not ctx.plan.callers(target):
            yield ctx.finding(
                POLICY_WITHOUT_CALLER,
                ("resilience", "services", target),
                f"a resilience policy for {target!r}, which no service declares calling",
                f"add {target!r} to the calls: of the services that call it, or drop the policy",
                (target,),
            )


def routes_without_readiness(ctx: Context) -> Iterator[Finding]:
    if ctx.plan.gateway is None:
        return
    seen: set[str] = set()
    for route in ctx.plan.gateway.routes:
        service = ctx.plan.services.get(route.service)
        if service is None or service.readiness is not None or route.service in seen:
            continue
        seen.add(route.service)
        yield ctx.finding(
            ROUTE_WITHOUT_READINESS,
            (*route.path, "service"),
            f"the gateway routes to {route.service!r}, which has no readiness check",
            "each instance gets traffic the moment its process starts, before it listens, "
            "and keeps it while it cannot answer: add readiness: {http: /ready} or {tcp: true}",
            (route.service,),
        )


def missing_resources(ctx: Context) -> Iterator[Finding]:
    """Resources matter where a scheduler places pods (and kills at the memory limit);
    ``corral up`` enforces none. So a manifest that sizes no service at all is taken as
    written for ``corral up`` and each finding is info; once one service is sized, one
    without is an oversight and a warning."""
    services = ctx.manifest.spec.services
    sized = any(
        s.resources.cpu is not None or s.resources.memory is not None for s in services.values()
    )
    for name, spec in services.items():
        missing = [key for key in ("cpu", "memory") if getattr(spec.resources, key) is None]
        if not missing:
            continue
        written = "resources" in spec.model_fields_set
        message = (
            f"{name} sets no {' or '.join(missing)} in resources:"
            if written
            else f"{name} sets no resources: (neither cpu nor memory)"
        )
        yield ctx.finding(
            MISSING_RESOURCES,
            ("services", name, "resources") if written else ("services", name),
            message,
            "on Kubernetes the scheduler places pods by their requests and kills one at its "
            "memory limit; the export then uses a default that fits no service in particular "
            "(docs/export.md): size it from what it uses, e.g. "
            "resources: {cpu: 250m, memory: 256Mi}",
            (name,),
            level=None if sized else INFO,
        )


CHECKS: tuple[Check, ...] = (
    call_cycles,
    deep_chains,
    retry_amplification,
    unreachable_services,
    idle_topics,
    resilience_coverage,
    routes_without_readiness,
    missing_resources,
)

RULES: tuple[Rule, ...] = (
    INVALID_MANIFEST,
    UNKNOWN_RULE,
    CALL_CYCLE,
    CALL_CHAIN_TOO_DEEP,
    UNREACHABLE_SERVICE,
    TOPIC_WITHOUT_CONSUMER,
    TOPIC_WITHOUT_PRODUCER,
    EVENT_PARTY_NOT_A_SERVICE,
    CALL_WITHOUT_POLICY,
    POLICY_WITHOUT_CALLER,
    RETRY_AMPLIFICATION,
    ROUTE_WITHOUT_READINESS,
    SHARED_DATABASE,
    MISSING_RESOURCES,
)
"""Every rule, in id order."""
