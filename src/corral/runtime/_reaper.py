"""The reaper: kills every process group of a run when its orchestrator dies.

Why hand-written: no library covers "kill my children's whole process groups when I am
SIGKILLed". Each instance runs in its own session (so Ctrl-C reaches only the
orchestrator, which then stops services in order), which also means the kernel will not
take them down with us. PR_SET_PDEATHSIG (set in every child) only covers the direct
child, and only while the forking thread lives; grandchildren escape it. A subreaper
would make the orchestrator responsible for reaping arbitrary orphans (zombies) and
still does nothing once the orchestrator itself is gone.

So the orchestrator starts this tiny process in its own session with a pipe on its
stdin and writes ``+<pgid>`` / ``-<pgid>`` lines as groups come and go. A pipe's write
end is closed by the kernel however its owner dies, so EOF here means "the orchestrator
is gone": SIGKILL every recorded group and exit. A clean ``down`` removes every group
first, so EOF then kills nothing.

Containers (``corral up --runtime docker|podman``) outlive their engine client, so
they are recorded too, as ``+c <engine binary> <name>`` / ``-c ...`` lines: at EOF the
reaper force-removes every recorded container with one ``<engine> rm --force``.

Run as a plain script (``python -I -S _reaper.py``): standard library only, no Corral
imports, so it starts in a few milliseconds.
"""

import contextlib
import os
import signal
import subprocess
import sys


def main() -> None:
    # Ctrl-C in a terminal goes to the orchestrator's group, not ours (own session), but
    # be explicit: only EOF ends the reaper.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    groups: set[int] = set()
    containers: set[tuple[str, str]] = set()
    stdin = sys.stdin.buffer
    while True:
        line = stdin.readline()
        if not line:
            break
        text = line.strip()
        if text[1:3] == b"c ":
            engine, _, name = text[3:].decode().partition(" ")
            entry = (engine, name)
            if text[:1] == b"+":
                containers.add(entry)
            else:
                containers.discard(entry)
            continue
        if len(text) < 2 or not text[1:].isdigit():
            continue
        pgid = int(text[1:])
        if text[:1] == b"+":
            groups.add(pgid)
        elif text[:1] == b"-":
            groups.discard(pgid)
    for pgid in sorted(groups):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
    for engine in sorted({engine for engine, _ in containers}):
        names = sorted(name for e, name in containers if e == engine)
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(
                [engine, "rm", "--force", *names],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=120,
                check=False,
            )


if __name__ == "__main__":
    main()
