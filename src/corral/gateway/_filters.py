"""HTTP filters of the listener and their per-route configs (JWT, RBAC, rate limit, CORS,
body size), plus problem+json local replies. Pure.

Filter order matters and is fixed here:

1. header_mutation strips every client-supplied ``x-corral-claim-*`` header;
2. cors answers preflights before anything asks for a token;
3. jwt_authn verifies tokens (per-route requirement; a catch-all rule for anything else)
   and writes verified claims as headers and as dynamic metadata;
4. rbac checks roles and claims from that metadata (per route; absent means allow);
5. local_ratelimit, after jwt_authn so it can key buckets by the verified subject;
6. buffer enforces the maximum body size;
7. fault injects chaos experiments' aborts and delays (after auth and limits, as a
   failing upstream would look: see _faults.py);
8. router.

A request pays only for the filters its route uses (issue 18: the gateway's CPU per
request). CORS, RBAC and the rate limit are rendered only when some route uses them, and
then ``disabled`` on the listener: Envoy builds no instance of them for a request whose
route carries no config of theirs. The filters that guard every route stay enabled on the
listener, so a route the renderer forgot can never skip them: claim-header stripping,
jwt_authn (a public route turns it off explicitly) and the body cap (off explicitly where
a route is unbuffered). A filter a route turns off is not built for its requests either
(:func:`off`).
"""

from __future__ import annotations

import math
import re

from corral import contract
from corral.gateway._envoy import (
    F_BUFFER,
    F_CORS,
    F_FAULT,
    F_JWT,
    F_MUTATION,
    F_RATELIMIT,
    F_RBAC,
    F_ROUTER,
    T_BUFFER,
    T_BUFFER_ROUTE,
    T_CEL_FILTER,
    T_CORS,
    T_CORS_ROUTE,
    T_FILTER_CONFIG,
    T_JWT,
    T_JWT_ROUTE,
    T_MUTATION,
    T_RATELIMIT,
    T_RBAC,
    T_RBAC_ROUTE,
    T_ROUTER,
    Json,
    duration,
    header_value,
    runtime_percent,
)
from corral.gateway._faults import fault_filter, route_fault
from corral.manifest import RateLimitKey, RateLimitSpec
from corral.plan import AuthPlan, GatewayPlan, ProviderPlan, RoutePlan

PAYLOAD_METADATA_KEY = "jwt_payload"
SUBJECT_HEADER = contract.CLAIM_HEADER_PREFIX + "sub"


def requirement_name(provider: str) -> str:
    return f"jwt-{provider}"


def http_filters(plan: GatewayPlan) -> list[Json]:
    """The listener's filter chain (see the module docstring for the order)."""
    filters: list[Json] = [
        {
            "name": F_MUTATION,
            "typed_config": {
                "@type": T_MUTATION,
                "mutations": {
                    "request_mutations": [
                        {
                            "remove_on_match": {
                                "key_matcher": {"prefix": contract.CLAIM_HEADER_PREFIX}
                            }
                        }
                    ]
                },
            },
        },
    ]
    if any(r.cors for r in plan.routes):
        filters.append(_route_enabled(F_CORS, {"@type": T_CORS}))
    if plan.providers:
        filters.append({"name": F_JWT, "typed_config": jwt_authn(plan)})
    if any(_checks_claims(r) for r in plan.routes):
        # No rules here: only routes with a per-route policy are checked.
        filters.append(_route_enabled(F_RBAC, {"@type": T_RBAC}))
    if any(r.rate_limit for r in plan.routes):
        filters.append(
            _route_enabled(F_RATELIMIT, {"@type": T_RATELIMIT, "stat_prefix": "gateway"})
        )
    if _buffered(plan):
        filters.append(
            {
                "name": F_BUFFER,
                "typed_config": {"@type": T_BUFFER, "max_request_bytes": plan.max_body_size},
            }
        )
    filters.append({"name": F_FAULT, "typed_config": fault_filter()})
    filters.append({"name": F_ROUTER, "typed_config": {"@type": T_ROUTER}})
    return filters


def _route_enabled(name: str, typed_config: Json) -> Json:
    """A filter that runs only for routes whose ``typed_per_filter_config`` names it."""
    return {"name": name, "typed_config": typed_config, "disabled": True}


def off() -> Json:
    """A route's ``typed_per_filter_config`` entry turning a listener filter off: Envoy
    then builds no instance of it for the route's requests (route-based filter chain)."""
    return {"@type": T_FILTER_CONFIG, "disabled": True}


def _checks_claims(route: RoutePlan) -> bool:
    return bool(route.auth and (route.auth.roles or route.auth.claims))


def _buffered(plan: GatewayPlan) -> bool:
    return any(r.max_body_size is not None for r in plan.routes)


def jwt_authn(plan: GatewayPlan) -> Json:
    """Providers, one requirement per provider, and a catch-all rule so nothing fails open.

    Every rendered route carries a per-route config (a requirement, or ``disabled`` when
    public); the catch-all rule only applies to a route that somehow has none.
    """
    # Only RBAC reads a verified payload from dynamic metadata (roles and claims checks),
    # and Envoy builds that metadata for every request a provider verifies: rendered for
    # the providers some route checks roles or claims of, and for no other.
    checked = {r.auth.provider for r in plan.routes if r.auth and _checks_claims(r)}
    providers = {p.name: _provider(p, in_metadata=p.name in checked) for p in plan.providers}
    if len(plan.providers) == 1:
        catch_all: Json = {"provider_name": plan.providers[0].name}
    else:
        catch_all = {
            "requires_any": {"requirements": [{"provider_name": p.name} for p in plan.providers]}
        }
    return {
        "@type": T_JWT,
        "providers": providers,
        "requirement_map": {
            requirement_name(p.name): {"provider_name": p.name} for p in plan.providers
        },
        "rules": [{"match": {"prefix": "/"}, "requires": catch_all}],
        # A preflight carries no token by design; only where some route answers CORS may
        # one pass unauthenticated (elsewhere it is an OPTIONS request like any other).
        "bypass_cors_preflight": any(r.cors for r in plan.routes),
    }


def _provider(provider: ProviderPlan, *, in_metadata: bool) -> Json:
    out: Json = {
        "issuer": provider.issuer,
        "audiences": list(provider.audiences),
        # Services verify the token themselves (corral.sdk.identity, docs/identity.md):
        # the claim headers below are a convenience they rebuild, never proof.
        "forward": True,
        # Only the Authorization header. Envoy's default also accepts ?access_token= in
        # the URL, which puts bearer tokens into access logs, proxies and browser history.
        "from_headers": [{"name": "Authorization", "value_prefix": "Bearer "}],
        "claim_to_headers": [
            {"header_name": contract.CLAIM_HEADER_PREFIX + claim.lower(), "claim_name": claim}
            for claim in provider.forward_claims
        ],
        # 0 would mean "unset" (60 s) to Envoy, so the smallest skew is 1 s.
        "clock_skew_seconds": max(1, math.ceil(provider.clock_skew)),
    }
    if in_metadata:
        out["payload_in_metadata"] = PAYLOAD_METADATA_KEY
    if provider.jwks_file is not None:
        out["local_jwks"] = {"filename": str(provider.jwks_file)}
        # Remember verified tokens (until they expire): a signature check per request
        # costs about a third of the gateway's throughput. Sound only because these keys
        # never change while Envoy runs: Envoy's token cache is not cleared when a JWKS is
        # re-fetched, so with remote keys a token signed by a withdrawn key would keep
        # passing until its own expiry.
        out["jwt_cache_config"] = {"jwt_cache_size": 10000}
    else:
        assert provider.jwks_service is not None
        out["remote_jwks"] = {
            "http_uri": {
                "uri": f"http://{provider.jwks_service}{provider.jwks_path}",
                "cluster": provider.jwks_service,
                "timeout": "1s",
            },
            # Envoy reads whole seconds; under 1 s would be 0, a re-fetch loop.
            "cache_duration": duration(max(1, math.ceil(provider.cache))),
            # Fetch in the background (at start and before expiry) so key rotation is
            # picked up without a restart, and never hold the listener for it.
            "async_fetch": {"fast_listener": True, "failed_refetch_duration": "1s"},
            "retry_policy": {
                "num_retries": 3,
                "retry_back_off": {"base_interval": "0.1s", "max_interval": "1s"},
            },
        }
    return out


def route_filter_configs(plan: GatewayPlan, route: RoutePlan) -> Json:
    """``typed_per_filter_config`` of one route."""
    out: Json = {}
    if plan.providers:
        if route.auth is None:
            out[F_JWT] = off()
        else:
            out[F_JWT] = {
                "@type": T_JWT_ROUTE,
                "requirement_name": requirement_name(route.auth.provider),
            }
    if route.auth and _checks_claims(route):
        out[F_RBAC] = _rbac(plan.provider(route.auth.provider), route.auth)
    if route.rate_limit:
        out[F_RATELIMIT] = _rate_limit(route.rate_limit)
    if route.cors:
        cors = route.cors
        origins = [
            {"safe_regex": {"regex": ".*"}} if origin == "*" else {"exact": origin}
            for origin in cors.origins
        ]
        policy: Json = {
            "@type": T_CORS_ROUTE,
            "allow_origin_string_match": origins,
            "allow_methods": ",".join(cors.methods),
            "allow_headers": ",".join(cors.headers),
            "max_age": str(int(cors.max_age)),
            "allow_credentials": cors.credentials,
        }
        if cors.expose_headers:
            policy["expose_headers"] = ",".join(cors.expose_headers)
        out[F_CORS] = policy
    out[F_FAULT] = route_fault(route.service)
    if _buffered(plan):  # else no buffer filter on the listener to configure
        if route.max_body_size is None:
            out[F_BUFFER] = off()
        elif route.max_body_size != plan.max_body_size:
            out[F_BUFFER] = {
                "@type": T_BUFFER_ROUTE,
                "buffer": {"max_request_bytes": route.max_body_size},
            }
    return out


def _claim_matcher(claim: str, value: Json) -> Json:
    return {
        "sourced_metadata": {
            "metadata_matcher": {
                "filter": F_JWT,
                "path": [{"key": PAYLOAD_METADATA_KEY}, {"key": claim}],
                "value": value,
            }
        }
    }


def _rbac(provider: ProviderPlan, auth: AuthPlan) -> Json:
    """Allow only tokens holding one of the roles and every required claim (else 403)."""
    principals: list[Json] = []
    if auth.roles:
        roles = [
            _claim_matcher(
                provider.roles_claim, {"list_match": {"one_of": {"string_match": {"exact": role}}}}
            )
            for role in auth.roles
        ]
        principals.append(roles[0] if len(roles) == 1 else {"or_ids": {"ids": roles}})
    for claim, expected in auth.claims:
        # A claim matches as a string, or as a list holding the value.
        principals.append(
            {
                "or_ids": {
                    "ids": [
                        _claim_matcher(claim, {"string_match": {"exact": expected}}),
                        _claim_matcher(
                            claim, {"list_match": {"one_of": {"string_match": {"exact": expected}}}}
                        ),
                    ]
                }
            }
        )
    principal = principals[0] if len(principals) == 1 else {"and_ids": {"ids": principals}}
    return {
        "@type": T_RBAC_ROUTE,
        "rbac": {
            "rules": {
                "action": "ALLOW",
                "policies": {"route": {"permissions": [{"any": True}], "principals": [principal]}},
            }
        },
    }


def token_bucket(spec: RateLimitSpec) -> Json:
    """``requests`` per ``per`` as a smoothly refilled bucket of ``requests`` tokens.

    Refilling in small steps (never under Envoy's 50 ms minimum) keeps the long-run rate
    at the configured value instead of allowing a full extra bucket at each interval edge.
    """
    steps = max(1, min(spec.requests, int(spec.per / 0.05)))
    while spec.requests % steps:
        steps -= 1
    return {
        "max_tokens": spec.requests,
        "tokens_per_fill": spec.requests // steps,
        "fill_interval": duration(spec.per / steps),
    }


def retry_after(spec: RateLimitSpec) -> int:
    """Whole seconds until the bucket has a token again, at least 1 (RFC 9110)."""
    bucket = token_bucket(spec)
    return max(1, math.ceil(float(bucket["fill_interval"].rstrip("s"))))


def _rate_limit(spec: RateLimitSpec) -> Json:
    bucket = token_bucket(spec)
    out: Json = {
        "@type": T_RATELIMIT,
        "stat_prefix": "route",
        "filter_enabled": runtime_percent(100, "corral.ratelimit.enabled"),
        "filter_enforced": runtime_percent(100, "corral.ratelimit.enforced"),
        "response_headers_to_add": [header_value("retry-after", str(retry_after(spec)))],
    }
    if spec.key is RateLimitKey.ROUTE:
        out["token_bucket"] = bucket
        return out
    # One bucket per distinct descriptor value (a wildcard entry); the route-wide bucket
    # is set out of reach so only the per-client buckets apply.
    key = "subject" if spec.key is RateLimitKey.SUBJECT else "client"
    action: Json = (
        {"request_headers": {"header_name": SUBJECT_HEADER, "descriptor_key": key}}
        if spec.key is RateLimitKey.SUBJECT
        else {"remote_address": {}}
    )
    entry_key = key if spec.key is RateLimitKey.SUBJECT else "remote_address"
    out["token_bucket"] = {
        "max_tokens": 1_000_000_000,
        "tokens_per_fill": 1_000_000_000,
        "fill_interval": "1s",
    }
    out["descriptors"] = [{"entries": [{"key": entry_key}], "token_bucket": bucket}]
    out["rate_limits"] = [{"actions": [action]}]
    out["max_dynamic_descriptors"] = 10_000
    return out


_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    408: "Request Timeout",
    413: "Content Too Large",
    429: "Too Many Requests",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def problem_body(title: str) -> Json:
    """RFC 9457 problem details for a reply Envoy makes itself."""
    return {
        "type": "about:blank",
        "title": title,
        "status": "%RESPONSE_CODE%",
        "detail": "%LOCAL_REPLY_BODY%",
        "request_id": "%REQ(X-REQUEST-ID)%",
    }


PROBLEM_JSON = "application/problem+json"


def _status_filter(status: int) -> Json:
    return {
        "status_code_filter": {
            "comparison": {
                "op": "EQ",
                "value": {"default_value": status, "runtime_key": f"corral.local_reply.{status}"},
            }
        }
    }


def local_reply_config() -> Json:
    """Every reply Envoy makes itself (401, 403, 429, 503...) as problem+json."""
    # jwt_authn answers 403 for a token with the wrong audience, but a token minted for
    # another system is not a credential here at all: 401. Every other 403 stays 403: RBAC's
    # (a valid token without the role or claim) and Envoy's refused upgrade (a WebSocket
    # handshake on a route without ``websocket: true``, details ``upgrade_failed``).
    mappers: list[Json] = [
        {
            "filter": {
                "and_filter": {
                    "filters": [
                        _status_filter(403),
                        {
                            "extension_filter": {
                                "name": "envoy.access_loggers.extension_filters.cel",
                                "typed_config": {
                                    "@type": T_CEL_FILTER,
                                    "expression": "response.code_details.startsWith('jwt_authn')",
                                },
                            }
                        },
                    ]
                }
            },
            "status_code": 401,
            "body_format_override": {
                "json_format": problem_body(_TITLES[401]),
                "content_type": PROBLEM_JSON,
            },
        }
    ]
    for status, title in sorted(_TITLES.items()):
        mapper: Json = {
            "filter": _status_filter(status),
            "body_format_override": {
                "json_format": problem_body(title),
                "content_type": PROBLEM_JSON,
            },
        }
        if status == 503:
            mapper["headers_to_add"] = [header_value("retry-after", "1")]
        mappers.append(mapper)
    return {
        "mappers": mappers,
        "body_format": {
            "json_format": problem_body("%RESPONSE_CODE_DETAILS%"),
            "content_type": PROBLEM_JSON,
        },
    }


def regex_escape(text: str) -> str:
    """Escape for RE2 (Python's escaping is a subset RE2 accepts)."""
    return re.escape(text)
