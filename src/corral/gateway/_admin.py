"""Envoy's admin API over its Unix socket: readiness, the live endpoint set, the live
route table (see _admin_access.py for why a socket)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from corral.gateway._errors import GatewayTimeoutError

# The host part is never resolved: requests go to the socket.
_BASE_URL = "http://envoy-admin"


class AdminClient:
    """Async client of one Envoy's admin interface, through its Unix socket."""

    def __init__(self, socket: str) -> None:
        self.socket = socket
        self._client = httpx.AsyncClient(
            base_url=_BASE_URL, transport=httpx.AsyncHTTPTransport(uds=socket), timeout=2.0
        )

    async def close(self) -> None:
        await self._client.aclose()

    async def ready(self) -> bool:
        try:
            response = await self._client.get("/ready")
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    async def runtime_modify(self, values: dict[str, str]) -> None:
        """Set runtime overrides (an empty value removes one); applied at once."""
        response = await self._client.post("/runtime_modify", params=values)
        response.raise_for_status()

    async def runtime(self) -> dict[str, str]:
        """Every runtime key Envoy has, with its final value."""
        response = await self._client.get("/runtime")
        response.raise_for_status()
        entries = response.json().get("entries", {})
        return {key: str(entry.get("final_value", "")) for key, entry in entries.items()}

    async def endpoints(self) -> dict[str, set[str]]:
        """Cluster name -> the ``host:port`` of every endpoint Envoy currently has."""
        response = await self._client.get("/clusters", params={"format": "json"})
        response.raise_for_status()
        return parse_clusters(response.json())

    async def wait_endpoints(
        self,
        expected: dict[str, set[str]],
        *,
        timeout: float = 5.0,  # noqa: ASYNC109 - a polling deadline, reported in the error
        interval: float = 0.002,
    ) -> float:
        """Wait until Envoy's endpoints equal ``expected`` for those clusters; seconds taken."""
        start = time.monotonic()
        deadline = start + timeout
        while True:
            try:
                live = await self.endpoints()
            except httpx.HTTPError:
                live = {}
            if all(live.get(name, set()) == want for name, want in expected.items()):
                return time.monotonic() - start
            if time.monotonic() >= deadline:
                raise GatewayTimeoutError(
                    f"Envoy did not apply the endpoint change within {timeout:g}s",
                    expected={k: sorted(v) for k, v in expected.items()},
                    live={k: sorted(v) for k, v in live.items() if k in expected},
                )
            await asyncio.sleep(interval)


def parse_clusters(data: dict[str, Any]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for cluster in data.get("cluster_statuses", []):
        hosts: set[str] = set()
        for host in cluster.get("host_statuses", []):
            socket = host.get("address", {}).get("socket_address", {})
            hosts.add(f"{socket.get('address')}:{socket.get('port_value')}")
        out[cluster["name"]] = hosts
    return out


def live_routes(admin_socket: str, *, timeout: float = 5.0) -> list[dict[str, Any]]:
    """The route table Envoy is serving now (from its config_dump), one dict per route:
    ``name``, ``match`` (e.g. ``prefix /rides``), ``methods``, ``host``, ``service``,
    ``rewrite``, ``timeout``, ``auth`` (a requirement name, ``public`` or None)."""
    transport = httpx.HTTPTransport(uds=admin_socket)
    with httpx.Client(base_url=_BASE_URL, transport=transport, timeout=timeout) as client:
        response = client.get("/config_dump", params={"resource": "dynamic_route_configs"})
    response.raise_for_status()
    rows: list[dict[str, Any]] = []
    for config in response.json().get("configs", []):
        route_config = config.get("route_config", {})
        for vhost in route_config.get("virtual_hosts", []):
            for route in vhost.get("routes", []):
                rows.append(_route_row(route))
    return rows


def _route_row(route: dict[str, Any]) -> dict[str, Any]:
    match = route.get("match", {})
    kind, value = "prefix", "/"
    for key in ("path", "prefix", "path_separated_prefix", "safe_regex"):
        if key in match:
            kind = {"path": "exact", "path_separated_prefix": "prefix", "safe_regex": "regex"}.get(
                key, key
            )
            raw = match[key]
            value = raw["regex"] if isinstance(raw, dict) else raw
    methods: str | None = None
    host: str | None = None
    for header in match.get("headers", []):
        string_match = header.get("string_match", {})
        shown = string_match.get("exact") or string_match.get("safe_regex", {}).get("regex")
        if header.get("name") == ":method":
            methods = shown
        elif header.get("name") == ":authority":
            host = shown
    action = route.get("route", {})
    jwt = route.get("typed_per_filter_config", {}).get("envoy.filters.http.jwt_authn", {})
    auth = "public" if jwt.get("disabled") else jwt.get("requirement_name")
    return {
        "name": route.get("name"),
        "match": f"{kind} {value}",
        "methods": methods,
        "host": host,
        "service": action.get("cluster"),
        "rewrite": action.get("regex_rewrite", {}).get("substitution"),
        "timeout": action.get("timeout"),
        "auth": auth,
        "direct_response": route.get("direct_response", {}).get("status"),
    }
