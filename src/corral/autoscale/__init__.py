"""Autoscaling from one policy per service (``autoscale: {min, max, target}``): the pure
decision (:class:`Autoscaler`, with stabilization windows and cooldowns, after the
Kubernetes HPA's algorithm). The control plane's loop feeds it the telemetry it scrapes;
``corral export kubernetes`` turns the same policy into an HPA or a KEDA ScaledObject.
See docs/autoscale.md."""

from corral.autoscale._policy import TOLERANCE, Autoscaler, Decision

__all__ = ["TOLERANCE", "Autoscaler", "Decision"]
