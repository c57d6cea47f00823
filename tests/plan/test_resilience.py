"""The resilience section: located diagnostics, resolution with defaults, CORRAL_RESILIENCE."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from corral import contract
from corral.manifest import ManifestError, parse
from corral.plan import resolve
from corral.plan._resilience import DEFAULT_PLAN, resilience_environment
from corral.sdk.client import Policies, Policy

HEAD = "name: shop\nservices:\n  front: {command: x}\n  payments: {command: x}\n"


def manifest(section: str) -> str:
    return HEAD + "resilience:\n" + textwrap.indent(textwrap.dedent(section), "  ")


def plan_of(section: str):  # type: ignore[no-untyped-def]
    return resolve(parse(manifest(section), Path("/srv/corral.yaml")), python="/usr/bin/python3")


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        (
            "services:\n  paymnts: {timeout: 1s}\n",
            "unknown service 'paymnts' (did you mean 'payments'?)",
        ),
        ("services:\n  payments: {timout: 1s}\n", "timout"),
        ("services:\n  payments: {retries: {attempts: 0}}\n", "attempts"),
        (
            "services:\n  payments: {retries: {backoff: {initial: 2s, max: 1s}}}\n",
            "at least initial",
        ),
        ("services:\n  payments: {routes: [{match: {prefix: charges}}]}\n", "must start with '/'"),
        ("services:\n  payments: {routes: [{match: {methods: [FETCH]}}]}\n", "unknown HTTP method"),
        ("services:\n  payments: {circuit_breaker: {failure_rate: 2}}\n", "failure_rate"),
        ("services:\n  payments: {bulkhead: {max_queue: 3}}\n", "max_concurrent"),
    ],
)
def test_mistakes_are_located_diagnostics(section: str, expected: str) -> None:
    """Each mistake in the section is reported with the file, line and key."""
    with pytest.raises(ManifestError) as info:
        parse(manifest(section), Path("/srv/corral.yaml"))
    text = str(info.value)
    assert expected in text
    assert "/srv/corral.yaml:" in text


def test_targets_inherit_defaults_and_routes_inherit_the_target() -> None:
    """A target takes its own sections, then defaults, then built-ins; routes the target's."""
    plan = plan_of(
        """
        defaults: {timeout: 2s, bulkhead: {max_concurrent: 8}}
        services:
          payments:
            retries: {attempts: 4}
            circuit_breaker: false
            routes:
              - match: {methods: [post], prefix: /charges}
                timeout: 5s
        """
    )
    assert plan.resilience is not None
    payments = plan.resilience.policy("payments")
    assert payments.timeout == 2.0
    assert payments.retries.attempts == 4
    assert payments.circuit_breaker is None
    assert payments.bulkhead is not None
    assert payments.bulkhead.max_concurrent == 8
    (route,) = payments.routes
    assert (route.methods, route.prefix, route.timeout) == (("POST",), "/charges", 5.0)
    assert route.retries.attempts == 4
    front = plan.resilience.policy("front")
    assert front.circuit_breaker is not None
    assert front.circuit_breaker.consecutive_failures == 5


def test_environment_is_the_document_the_sdk_reads() -> None:
    """resilience_environment renders JSON that the SDK parses back into the same policy."""
    plan = plan_of(
        """
        services:
          payments:
            timeout: 1500ms
            retries: {attempts: 2, backoff: {initial: 10ms, max: 100ms}, budget: {ratio: 0.1}}
            circuit_breaker: {failure_rate: 0.5, min_calls: 4, wait: 3s}
            bulkhead: {max_concurrent: 4, max_queue: 2}
        """
    )
    env = resilience_environment(plan, "front")
    document = json.loads(env[contract.RESILIENCE])
    assert document["version"] == 1
    policy = Policies.from_json(document).for_target("payments")
    assert policy.timeout == 1.5
    assert (policy.retries.attempts, policy.retries.initial, policy.retries.budget_ratio) == (
        2,
        0.01,
        0.1,
    )
    assert policy.circuit_breaker is not None
    assert (policy.circuit_breaker.failure_rate, policy.circuit_breaker.wait) == (0.5, 3.0)
    assert policy.bulkhead is not None
    assert policy.bulkhead.max_queue == 2
    assert (
        "payments"
        not in json.loads(resilience_environment(plan, "payments")[contract.RESILIENCE])["services"]
    )


def test_no_section_means_no_variable_and_identical_defaults() -> None:
    """Without the section no variable is set, and the SDK's defaults equal the plan's."""
    plan = resolve(parse(HEAD, Path("/srv/corral.yaml")), python="/usr/bin/python3")
    assert resilience_environment(plan, "front") == {}
    assert Policies.from_json(DEFAULT_PLAN.to_json()).defaults == Policy()
