"""The corral command as a user runs it: messages and exit codes, never tracebacks."""

from __future__ import annotations

from pathlib import Path

from testkit import corral


def test_validate_lists_every_problem_with_location(tmp_path: Path) -> None:
    """`corral validate` prints each problem as file:line:col and exits 1, no traceback."""
    (tmp_path / "corral.yaml").write_text(
        "name: demo\nservices:\n  web:\n    command: [python, -m, http.server]\n"
        "    replica: 2\n  api:\n    command: run\n    replicas: many\n"
    )
    result = corral("validate", cwd=tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "corral.yaml:5:5: services.web.replica: unknown key 'replica'" in result.stderr
    assert "did you mean 'replicas'?" in result.stderr
    assert "corral.yaml:8:5: services.api.replicas: expected an integer" in result.stderr


def test_validate_accepts_a_good_manifest(tmp_path: Path) -> None:
    """A valid manifest is confirmed with its services in start order."""
    (tmp_path / "corral.yaml").write_text(
        "name: demo\nservices:\n  web:\n    command: run\n    depends_on: [db]\n"
        "  db:\n    command: run\n"
    )
    result = corral("validate", str(tmp_path / "corral.yaml"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "2 services (db, web)" in result.stdout


def test_missing_manifest_is_a_message(tmp_path: Path) -> None:
    """No manifest: a one-line error, exit 1."""
    result = corral("validate", cwd=tmp_path)
    assert result.returncode == 1
    assert "no such manifest file" in result.stderr
    assert "Traceback" not in result.stderr


def test_status_without_a_running_system_says_so(tmp_path: Path) -> None:
    """Talking to a system that is not running explains how to start it."""
    (tmp_path / "corral.yaml").write_text("name: demo\nservices:\n  web:\n    command: run\n")
    result = corral("status", cwd=tmp_path)
    assert result.returncode == 1
    assert "no system is running" in result.stderr
    assert "corral up" in result.stderr


def test_scale_argument_must_be_service_equals_count(tmp_path: Path) -> None:
    """A malformed SERVICE=N is a usage error (exit 2)."""
    (tmp_path / "corral.yaml").write_text("name: demo\nservices:\n  web:\n    command: run\n")
    result = corral("scale", "web:3", cwd=tmp_path)
    assert result.returncode == 2
    assert "expected SERVICE=N" in result.stderr


def test_migrate_applies_each_sdk_service_schema_to_its_own_database(tmp_path: Path) -> None:
    """`corral migrate` creates an SDK service's tables in the database `up` would give it."""
    import sqlite3

    (tmp_path / "notes.py").write_text(
        "from sqlalchemy import Column, Integer, MetaData, Table\n"
        "from corral.sdk import Service\n"
        "metadata = MetaData()\n"
        "Table('note', metadata, Column('id', Integer, primary_key=True))\n"
        "svc = Service('notes', metadata=metadata)\n"
    )
    (tmp_path / "corral.yaml").write_text(
        "name: demo\nservices:\n  notes:\n    app: notes:svc\n"
        "  other:\n    command: run\n    database: none\n"
    )
    result = corral("migrate", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "notes: create_all" in result.stdout
    assert "other: not a corral.sdk app" in result.stdout
    database = tmp_path / ".corral" / "data" / "notes.sqlite3"
    tables = sqlite3.connect(database).execute("SELECT name FROM sqlite_master").fetchall()
    assert ("note",) in tables


def test_migrate_names_an_unknown_service(tmp_path: Path) -> None:
    """Migrating a service the manifest lacks is refused by name."""
    (tmp_path / "corral.yaml").write_text("name: demo\nservices:\n  web:\n    command: run\n")
    result = corral("migrate", "nope", cwd=tmp_path)
    assert result.returncode == 1
    assert "no service named 'nope'" in result.stderr


def test_unreachable_event_bus_is_a_message_not_a_traceback(tmp_path: Path) -> None:
    """`corral up` with an external NATS that does not answer explains it in one line."""
    (tmp_path / "corral.yaml").write_text(
        "name: demo\nservices:\n  web:\n    command: [python3, -m, http.server]\n"
        "events:\n  url: nats://127.0.0.1:1\n  topics:\n"
        "    thing.happened: {producers: [web], consumers: [web]}\n"
    )
    result = corral("up", "--no-logs", cwd=tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "cannot reach NATS at nats://127.0.0.1:1" in result.stderr
