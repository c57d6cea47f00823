"""The conformance scenarios (scenarios.py) under the podman runtime of ``corral up``."""

from scenarios import RuntimeScenarios


class TestConformancePodman(RuntimeScenarios):
    """examples/hello with ``corral up --runtime podman``."""

    runtime = "podman"
