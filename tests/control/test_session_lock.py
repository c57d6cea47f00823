"""One session per state directory (the lock `corral up` takes before publishing)."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.api import RunFiles
from corral.control._session import _exclusive
from corral.runtime.errors import AlreadyRunningError


def test_a_second_session_on_the_same_state_dir_is_refused(tmp_path: Path) -> None:
    """While one session holds the lock, another fails with AlreadyRunningError naming
    the first one's pid, and the first one's published files stay."""
    files = RunFiles(tmp_path)
    with _exclusive(tmp_path):
        files.publish(url="http://127.0.0.1:1", pid=4242, admin_token="t", extra={})
        with pytest.raises(AlreadyRunningError, match="pid 4242"), _exclusive(tmp_path):
            pass
        assert files.read() is not None
    with _exclusive(tmp_path):  # released: the next session may start
        pass


def test_the_state_dir_is_private(tmp_path: Path) -> None:
    """`.corral` (logs, databases, tokens) is readable by its owner only."""
    state = tmp_path / ".corral"
    state.mkdir(mode=0o755)
    with _exclusive(state):
        assert state.stat().st_mode & 0o777 == 0o700
