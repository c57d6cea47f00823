"""The conformance scenarios (scenarios.py) under the process runtime of ``corral up``."""

from scenarios import RuntimeScenarios


class TestConformanceProcess(RuntimeScenarios):
    """examples/hello with ``corral up --runtime process``."""

    runtime = "process"
