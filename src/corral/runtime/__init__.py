"""The runtime: the only part of Corral that starts and stops processes.

``orchestrator`` supervises a Plan's services; ``registry`` holds the live instances;
``logs`` captures their output; ``events`` reports progress; ``errors`` is the error
tree; ``addon`` is how the gateway and broker plug in.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from corral.runtime._instance import Instance

__all__ = ["Instance"]


def __getattr__(name: str) -> Any:
    # Lazily: `corral.runtime.errors` is imported by every CLI command, and the
    # supervisor's modules (plan, manifest models) would slow each of them down.
    if name == "Instance":
        from corral.runtime._instance import Instance

        return Instance
    raise AttributeError(name)
