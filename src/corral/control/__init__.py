"""The control plane of one running system: orchestrator + addons + HTTP API.

``corral up`` (foreground or detached) runs exactly one :class:`SystemSession`. This is
the composition root: the only place that knows which addons (gateway, broker) a plan
needs, so the runtime never imports them.
"""

from corral.control._addons import addons_for
from corral.control._session import SystemSession

__all__ = ["SystemSession", "addons_for"]
