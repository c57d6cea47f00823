"""The runtime: the only part of Corral that starts and stops processes.

``registry`` holds the live instances; ``addon`` is how the gateway and broker plug in.
"""
