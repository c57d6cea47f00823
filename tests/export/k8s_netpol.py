"""A small NetworkPolicy evaluator (networking.k8s.io/v1), for tests: may ``source`` open a
connection to ``destination`` on ``port``?

Hand-written because no cluster runs here and no Python library evaluates policies; the
Go tools that do (Cyclonus, np-guard's netpol-analyzer) are not installable offline. It
follows the API reference's semantics:

- a pod is isolated for ingress (egress) when some policy in its namespace selects it
  with ``Ingress`` (``Egress``) among its ``policyTypes`` (absent: ``Ingress``, plus
  ``Egress`` when the policy has egress rules); an isolated pod allows only what one of
  those policies' rules allows; policies add up;
- a connection needs both the sender's egress and the receiver's ingress;
- a rule matches when one of its peers matches (no ``from``/``to``: every peer) and one
  of its ports does (no ``ports``: every port); a port may be a number (with
  ``endPort``) or a name, resolved against the destination pod's container ports;
- a peer is ``podSelector`` (the policy's namespace), ``namespaceSelector`` (every pod in
  those namespaces), both (those pods in those namespaces), or ``ipBlock`` (addresses,
  minus ``except``);
- selectors: ``matchLabels`` and ``matchExpressions`` (In, NotIn, Exists, DoesNotExist);
  an empty selector matches everything.

Not modelled: traffic from the pod's own node (always allowed, the kubelet's probes) and
SCTP; an endpoint outside the cluster is an :class:`External` with an address.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

Policy = Mapping[str, Any]


@dataclass(frozen=True)
class Pod:
    name: str
    namespace: str
    labels: Mapping[str, str]
    ports: Mapping[str, int] = field(default_factory=dict)
    """Named container ports (name -> number)."""
    ip: str | None = None


@dataclass(frozen=True)
class External:
    """An address outside the cluster (a client on the internet, a managed database)."""

    name: str
    ip: str


Endpoint = Pod | External


@dataclass(frozen=True)
class Cluster:
    policies: tuple[Policy, ...]
    namespaces: Mapping[str, Mapping[str, str]]
    """Namespace -> its labels (``kubernetes.io/metadata.name`` is added for each)."""

    def labels_of(self, namespace: str) -> dict[str, str]:
        return {
            **self.namespaces.get(namespace, {}),
            "kubernetes.io/metadata.name": namespace,
        }

    def allowed(
        self, source: Endpoint, destination: Endpoint, port: int, protocol: str = "TCP"
    ) -> bool:
        """Whether ``source`` may connect to ``destination`` on ``port``/``protocol``."""
        if isinstance(source, Pod) and not self._allows(
            source, "Egress", destination, destination, port, protocol
        ):
            return False
        return not isinstance(destination, Pod) or self._allows(
            destination, "Ingress", source, destination, port, protocol
        )

    def _allows(
        self,
        pod: Pod,
        direction: str,
        peer: Endpoint,
        destination: Endpoint,
        port: int,
        protocol: str,
    ) -> bool:
        selecting = [
            p
            for p in self.policies
            if p["metadata"].get("namespace") == pod.namespace
            and matches(p["spec"].get("podSelector") or {}, pod.labels)
            and direction in policy_types(p)
        ]
        if not selecting:
            return True
        key, peers_key = ("egress", "to") if direction == "Egress" else ("ingress", "from")
        for policy in selecting:
            for rule in policy["spec"].get(key) or ():
                peers = rule.get(peers_key) or []
                if peers and not any(
                    self._peer(p, policy["metadata"]["namespace"], peer) for p in peers
                ):
                    continue
                ports = rule.get("ports") or []
                if not ports or any(_port(p, port, protocol, destination) for p in ports):
                    return True
        return False

    def _peer(self, peer: Mapping[str, Any], namespace: str, endpoint: Endpoint) -> bool:
        if "ipBlock" in peer:
            return _in_block(peer["ipBlock"], endpoint)
        if not isinstance(endpoint, Pod):
            return False
        pods = peer.get("podSelector")
        namespaces = peer.get("namespaceSelector")
        if namespaces is None:
            in_namespace = endpoint.namespace == namespace
        else:
            in_namespace = matches(namespaces, self.labels_of(endpoint.namespace))
        return in_namespace and (pods is None or matches(pods, endpoint.labels))


def policy_types(policy: Policy) -> list[str]:
    spec = policy["spec"]
    if "policyTypes" in spec:
        return list(spec["policyTypes"])
    return ["Ingress", *(["Egress"] if spec.get("egress") else [])]


def matches(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """A label selector (``matchLabels`` and ``matchExpressions``) against labels."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or ():
        key, operator = expression["key"], expression["operator"]
        values = expression.get("values") or []
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and key in labels and labels[key] in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
        if operator not in ("In", "NotIn", "Exists", "DoesNotExist"):
            raise ValueError(f"unknown selector operator {operator!r}")
    return True


def _port(entry: Mapping[str, Any], port: int, protocol: str, destination: Endpoint) -> bool:
    if entry.get("protocol", "TCP") != protocol:
        return False
    wanted = entry.get("port")
    if wanted is None:
        return True
    if isinstance(wanted, str):
        named = destination.ports.get(wanted) if isinstance(destination, Pod) else None
        return named == port
    return bool(wanted <= port <= entry.get("endPort", wanted))


def _in_block(block: Mapping[str, Any], endpoint: Endpoint) -> bool:
    if endpoint.ip is None:
        return False
    address = ipaddress.ip_address(endpoint.ip)
    if address not in ipaddress.ip_network(block["cidr"]):
        return False
    return not any(address in ipaddress.ip_network(e) for e in block.get("except") or ())


def pods_of(objects: Iterable[Mapping[str, Any]]) -> list[Pod]:
    """One pod per Deployment or StatefulSet: its template's labels and named ports."""
    out = []
    for workload in objects:
        if workload["kind"] not in ("Deployment", "StatefulSet"):
            continue
        template = workload["spec"]["template"]
        ports = {
            p["name"]: p["containerPort"]
            for c in template["spec"]["containers"]
            for p in c.get("ports", ())
            if "name" in p
        }
        out.append(
            Pod(
                workload["metadata"]["name"],
                workload["metadata"]["namespace"],
                dict(template["metadata"]["labels"]),
                ports,
            )
        )
    return out
