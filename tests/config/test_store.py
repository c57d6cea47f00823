"""The version store on disk: history, rollback, compare-and-swap, and a restart of it."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from corral.config import (
    ConfigStore,
    ServiceConfig,
    UnknownVersionError,
    VersionConflictError,
    diff_view,
    history_view,
    set_values,
    version_view,
)

BASE = {"web": ServiceConfig(base={"LEVEL": "info"}, sources={"LEVEL": "corral.yaml:5:7"})}


def commit_three(store: ConfigStore) -> None:
    """v1 from the manifest, v2 a runtime value, v3 back to v1's configuration."""
    store.commit(expected=0, services=BASE, author="ada", kind="up", now=1.0)
    two = set_values(BASE, "web", {"LEVEL": "debug"}, version=2, author="bob")
    store.commit(expected=1, services=two, author="bob", kind="set", message="more logs", now=2.0)
    store.commit(expected=2, services=store.get(1).services, author="ada", kind="rollback", now=3.0)


def test_history_records_each_change_with_author_time_message(tmp_path: Path) -> None:
    """Each version keeps who, when, why and what changed from the one before."""
    store = ConfigStore(tmp_path / "config")
    commit_three(store)
    history = history_view(store.history())
    assert [(v.version, v.author, v.kind, v.time) for v in history] == [
        (1, "ada", "up", 1.0),
        (2, "bob", "set", 2.0),
        (3, "ada", "rollback", 3.0),
    ]
    assert history[1].message == "more logs"
    assert [c.model_dump() for c in history[1].changes] == [
        {"service": "web", "key": "LEVEL", "old": "info", "new": "debug"}
    ]
    assert [c.model_dump() for c in history[2].changes] == [
        {"service": "web", "key": "LEVEL", "old": "debug", "new": "info"}
    ]
    assert store.get(3).services == store.get(1).services


def test_show_and_diff_between_any_two_versions(tmp_path: Path) -> None:
    """show gives each value with its source; diff compares any two versions."""
    store = ConfigStore(tmp_path / "config")
    commit_three(store)
    shown = version_view(store.get(2))
    assert shown.services["web"]["LEVEL"].model_dump() == {
        "value": "debug",
        "source": "corral config set (version 2, bob)",
    }
    assert version_view(store.get(1)).services["web"]["LEVEL"].source == "corral.yaml:5:7"
    assert diff_view(store.get(1), store.get(3)).changes == []
    assert [c.model_dump() for c in diff_view(store.get(3), store.get(2)).changes] == [
        {"service": "web", "key": "LEVEL", "old": "info", "new": "debug"}
    ]


def test_history_survives_a_restart_of_the_store(tmp_path: Path) -> None:
    """A new store on the same directory (the control plane restarted) has every version."""
    commit_three(ConfigStore(tmp_path / "config"))
    again = ConfigStore(tmp_path / "config")
    assert [v.version for v in again.history()] == [1, 2, 3]
    assert again.get(2).services["web"].values == {"LEVEL": "debug"}
    again.commit(expected=3, services=BASE, author="cy", kind="set")
    latest = again.latest()
    assert latest is not None
    assert latest.version == 4
    assert sorted(p.name for p in (tmp_path / "config").iterdir()) == [
        "v000001.json",
        "v000002.json",
        "v000003.json",
        "v000004.json",
    ]
    assert oct((tmp_path / "config" / "v000004.json").stat().st_mode & 0o777) == "0o600"


def test_a_commit_from_an_old_version_is_refused(tmp_path: Path) -> None:
    """Compare-and-swap: a change computed from version 1 cannot overwrite version 2."""
    store = ConfigStore(tmp_path / "config")
    store.commit(expected=0, services=BASE, author="ada", kind="up")
    store.commit(expected=1, services=BASE, author="bob", kind="set")
    with pytest.raises(VersionConflictError, match="at version 2, not 1"):
        store.commit(expected=1, services={}, author="cy", kind="set")
    assert [v.author for v in store.history()] == ["ada", "bob"]


def test_racing_commits_from_two_stores_one_wins_none_is_lost(tmp_path: Path) -> None:
    """Two writers (two store objects, as two processes would be) committing on the same
    version at once: exactly one succeeds, the other gets a conflict; retrying from the
    new latest version, both changes end up in the history."""
    stores = [ConfigStore(tmp_path / "config") for _ in range(2)]
    stores[0].commit(expected=0, services=BASE, author="ada", kind="up")
    barrier = threading.Barrier(8)
    outcomes: list[str] = []

    def writer(index: int) -> None:
        store = stores[index % 2]
        key = f"K{index}"
        barrier.wait()
        while True:
            latest = store.latest()
            assert latest is not None
            services = set_values(
                latest.services, "web", {key: "1"}, version=latest.version + 1, author=key
            )
            try:
                store.commit(expected=latest.version, services=services, author=key, kind="set")
            except VersionConflictError:
                outcomes.append("conflict")
                continue
            outcomes.append("ok")
            return

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    final = ConfigStore(tmp_path / "config").latest()
    assert final is not None
    assert final.version == 9
    assert outcomes.count("ok") == 8
    assert set(final.services["web"].values) == {"LEVEL", *(f"K{i}" for i in range(8))}


def test_unknown_version_names_the_known_range(tmp_path: Path) -> None:
    """Asking for a version that does not exist says which do."""
    store = ConfigStore(tmp_path / "config")
    with pytest.raises(
        UnknownVersionError, match="no configuration version 1 \\(no versions yet\\)"
    ):
        store.get(1)
    commit_three(store)
    with pytest.raises(UnknownVersionError, match="no configuration version 9 \\(versions 1-3\\)"):
        store.get(9)
