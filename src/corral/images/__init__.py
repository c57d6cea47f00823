"""Container images of a system's services, and the container runtime that runs them
(``corral up --runtime docker|podman``).

- :class:`Engine`: the docker or podman client, and a clear :class:`EngineError` when it
  is missing or its daemon is down;
- :func:`ensure_base_image`: a Debian base with Python, made by debootstrap when missing;
- :func:`build_wheelhouse`: Corral's and every dependency's wheel, built on the host;
- :func:`build_image`: a service's image from the exporter's Dockerfile, tagged by the
  hash of its content and reused;
- :class:`ContainerDriver`: the runtime driver that runs each instance as a container.

See docs/runtimes.md.
"""

from corral.images._base import BASE_IMAGE, BASE_PYTHON, ensure_base_image
from corral.images._build import build_image
from corral.images._driver import ContainerDriver
from corral.images._engine import ENGINES, Engine, EngineError
from corral.images._wheels import build_wheelhouse

__all__ = [
    "BASE_IMAGE",
    "BASE_PYTHON",
    "ENGINES",
    "ContainerDriver",
    "Engine",
    "EngineError",
    "build_image",
    "build_wheelhouse",
    "ensure_base_image",
]
