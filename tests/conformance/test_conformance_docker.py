"""The conformance scenarios (scenarios.py) under the docker runtime of ``corral up``."""

from scenarios import RuntimeScenarios


class TestConformanceDocker(RuntimeScenarios):
    """examples/hello with ``corral up --runtime docker``."""

    runtime = "docker"
