"""An OCI runtime for podman on hosts that refuse runc's setrlimit (this machine kind).

Podman 4.3 (rootful) always writes RLIMIT_NPROC and RLIMIT_NOFILE into the OCI spec and
runc's ``setrlimit`` of them fails here ("error setting rlimit type 6/7: operation not
permitted"), even with ``--ulimit host`` (docs/design-notes.md, "Containers on this
machine kind"). The wrapper deletes the limits from what runc reads, the bundle's
``config.json`` (``create``/``run``: the folder after ``--bundle``/``-b``) or the
``--process`` file (``exec``: healthchecks, ``podman exec``), then execs runc with the
same arguments. Pass it as ``podman run --runtime PATH`` and ``podman build --runtime
PATH``. It lives in the tests, not the product: nothing in Corral runs podman yet, and a
host that allows the limits needs none of it.
"""

from __future__ import annotations

import sys
from pathlib import Path

RUNC = "/usr/sbin/runc"

_SCRIPT = '''#!{python}
"""OCI runtime: runc without process rlimits (written by tests/export/podman_runtime.py)."""
import json, os, sys

def _value(args, *flags):
    for i, arg in enumerate(args):
        for flag in flags:
            if arg == flag and i + 1 < len(args):
                return args[i + 1]
            if arg.startswith(flag + "="):
                return arg[len(flag) + 1:]
    return None

def _drop_rlimits(path, key):
    with open(path) as f:
        spec = json.load(f)
    process = spec.get("process", spec) if key == "bundle" else spec
    if process.pop("rlimits", None) is not None:
        with open(path, "w") as f:
            json.dump(spec, f)

args = sys.argv[1:]
bundle = _value(args, "--bundle", "-b")
if bundle and os.path.exists(os.path.join(bundle, "config.json")):
    _drop_rlimits(os.path.join(bundle, "config.json"), "bundle")
process = _value(args, "--process", "-p")
if process and os.path.exists(process):
    _drop_rlimits(process, "process")
os.execv({runc!r}, [{runc!r}, *args])
'''


def write_runc_wrapper(folder: Path, *, runc: str = RUNC) -> Path:
    """Write the wrapper into ``folder`` (executable, run by this Python); its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "runc-without-rlimits"
    path.write_text(_SCRIPT.format(python=sys.executable, runc=runc))
    path.chmod(0o755)
    return path
