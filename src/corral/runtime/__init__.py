"""The runtime: the only part of Corral that starts and stops processes.

``orchestrator`` supervises a Plan's services; ``registry`` holds the live instances;
``logs`` captures their output; ``events`` reports progress; ``errors`` is the error
tree; ``addon`` is how the gateway and broker plug in.
"""
