# -*- coding: utf-8 -*-
# Copyright (c) mlops.mlflow developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Live restores (_live.py): a backup written into the store an MLflow store object holds open.

On real MLflow SQLite databases. The proof with a running server and concurrent writers is the
Molecule scenario's; here, MLflow's own SqlAlchemyStore, opened before the restore, plays a worker."""

from __future__ import annotations

import json
import os
import sqlite3
import time

import pytest
from ansible_collections.mlops.mlflow.plugins.module_utils import _backup, _live, _store_read, _swap
from ansible_collections.mlops.mlflow.tests.unit.plugins.module_utils.store_cases import _now


@pytest.fixture
def backup(served, tmp_path):
    return _backup.create_backup(str(served), str(tmp_path / "backups"), "manual", now=_now(0))["path"]


def worker(store):
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    return SqlAlchemyStore(f"sqlite:///{store}/db/mlflow.db", str(store / "mlruns"))


def finished_run(tracking):
    from mlflow.entities import RunStatus

    run_id = tracking.create_run("1", "bob", int(time.time() * 1000), [], "after-backup").info.run_id
    tracking.update_run_info(run_id, RunStatus.FINISHED, int(time.time() * 1000), "after-backup")
    return run_id


def test_a_live_restore_keeps_the_files_and_an_open_store_sees_the_backup(served, backup):
    tracking = worker(served)
    late = finished_run(tracking)
    (served / "mlruns" / "1" / late / "artifacts").mkdir(parents=True)
    (served / "mlruns" / "1" / late / "artifacts" / "late.txt").write_text("after the backup\n")
    inode = os.stat(served / "db" / "mlflow.db").st_ino
    assert _live.live_problems(str(served), backup) == []

    result = _live.restore_live(str(served), backup, now=_now(60))

    assert os.stat(served / "db" / "mlflow.db").st_ino == inode
    # The worker's pooled connection reads the restored data: the late run is gone.
    assert late not in {run.info.run_id for run in tracking.search_runs(["1"], "", 3)}
    assert not (served / "mlruns" / "1" / late).exists()
    assert _store_read.store_info(str(served))["db"]["counts"]["runs"] == 3
    # What it wrote, in the manifest's shape.
    with open(os.path.join(backup, "manifest.json"), encoding="utf-8") as handle:
        assert result["counts"] == json.load(handle)["counts"]
    # Kept as swap_in keeps it, so the one way back undoes it.
    kept = result["kept"]
    assert _store_read.database_info(os.path.join(kept, "db", "mlflow.db"))["counts"]["runs"] == 4
    assert (served / "mlruns").stat().st_mode & 0o777 == 0o777
    tracking.engine.dispose()
    _swap.put_back(str(served), kept)
    assert _store_read.store_info(str(served))["db"]["counts"]["runs"] == 4
    assert (served / "mlruns" / "1" / late / "artifacts" / "late.txt").read_text() == "after the backup\n"


def test_a_run_in_flight_that_the_backup_lacks_refuses_unless_allowed(served, backup):
    tracking = worker(served)
    in_flight = tracking.create_run("1", "bob", int(time.time() * 1000), [], "in-flight").info.run_id
    tracking.engine.dispose()
    [problem] = _live.live_problems(str(served), backup)
    assert problem == f"1 run(s) in flight are not in the backup ({in_flight})"
    assert _live.live_problems(str(served), backup, allow_running=True) == []


def test_the_runs_in_flight_are_named_newest_first(served, backup):
    tracking = worker(served)
    now = int(time.time() * 1000)
    started = [tracking.create_run("1", "bob", now + step, [], f"r{step}").info.run_id for step in range(7)]
    tracking.engine.dispose()
    [problem] = _live.live_problems(str(served), backup)
    assert problem == f"7 run(s) in flight are not in the backup ({', '.join(started[::-1][:5])}, ...)"


def test_control_a_finished_run_after_the_backup_is_no_reason(served, backup):
    tracking = worker(served)
    finished_run(tracking)
    tracking.engine.dispose()
    assert _live.live_problems(str(served), backup) == []


def test_another_schema_revision_wal_mode_or_a_damaged_database_sends_the_restore_the_stopped_way(served, backup):
    live = served / "db" / "mlflow.db"
    conn = sqlite3.connect(live)
    with conn:
        conn.execute("UPDATE alembic_version SET version_num = 'ffffffffffff'")
    conn.close()
    [problem] = _live.live_problems(str(served), backup)
    assert problem.startswith("the live mlflow.db is at schema revision ffffffffffff, the backup's at ")

    conn = sqlite3.connect(live)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.close()
    assert _live.live_problems(str(served), backup) == [
        "the live mlflow.db is in WAL mode, where other connections may keep reading the old pages"
    ]

    live.write_bytes(b"corrupt" * 1000)
    [problem] = _live.live_problems(str(served), backup)
    assert problem.startswith("the live mlflow.db cannot be read")


def test_users_the_backup_does_not_have_refuse(served, tmp_path):
    os.rename(served / "db" / "basic_auth.db", tmp_path / "aside.db")
    backup = _backup.create_backup(str(served), str(tmp_path / "backups"), "manual", now=_now(0))["path"]
    os.rename(tmp_path / "aside.db", served / "db" / "basic_auth.db")
    assert _live.live_problems(str(served), backup) == ["the live store has a basic_auth.db and the backup none"]


def test_a_failed_artifact_swap_changes_nothing(served, backup, monkeypatch):
    before = _store_read.store_info(str(served))["db"]["counts"]
    entries = sorted(os.listdir(served / "mlruns"))

    def refuse(*_args, **_kwargs):
        raise OSError("no space left on device")

    monkeypatch.setattr(_live, "copy_tree", refuse)
    with pytest.raises(_store_read.StoreError, match="what was there before was put back"):
        _live.restore_live(str(served), backup, now=_now(60))
    assert sorted(os.listdir(served / "mlruns")) == entries
    assert _store_read.store_info(str(served))["db"]["counts"] == before
    assert not [name for name in os.listdir(served) if "restore" in name]


def test_a_failure_after_a_database_was_written_puts_everything_back(served, backup, monkeypatch):
    """basic_auth.db fails after mlflow.db took the backup's pages and the artifacts were swapped."""
    tracking = worker(served)
    late = finished_run(tracking)
    (served / "mlruns" / "1" / late / "artifacts").mkdir(parents=True)
    (served / "mlruns" / "1" / late / "artifacts" / "late.txt").write_text("after the backup\n")
    entries = sorted(os.listdir(served / "mlruns" / "1"))
    pages, written = _live._pages, []

    def fail_on_users(source, dest):
        if source.startswith(backup) and dest.endswith("basic_auth.db"):
            raise sqlite3.OperationalError("disk I/O error")
        pages(source, dest)
        if source.startswith(backup):
            written.append(os.path.basename(dest))

    monkeypatch.setattr(_live, "_pages", fail_on_users)
    with pytest.raises(_store_read.StoreError, match=r"disk I/O error.*what was there before was put back"):
        _live.restore_live(str(served), backup, now=_now(60))
    # The failure came after mlflow.db had taken the backup's pages (which lack the late run); they were put back.
    assert written == ["mlflow.db"]
    assert late in {run.info.run_id for run in tracking.search_runs(["1"], "", 3)}
    assert sorted(os.listdir(served / "mlruns" / "1")) == entries
    assert (served / "mlruns" / "1" / late / "artifacts" / "late.txt").read_text() == "after the backup\n"
    assert _store_read.store_info(str(served))["db"]["counts"]["runs"] == 4
    assert not [name for name in os.listdir(served) if "restore" in name]
    tracking.engine.dispose()


def test_the_module_checks_then_restores_into_the_running_store(served, backup, capsys):
    from ansible_collections.mlops.mlflow.plugins.modules import mlflow_restore
    from ansible_collections.mlops.mlflow.tests.unit.plugins.modules.store_modules import run

    tracking = worker(served)
    late = finished_run(tracking)
    code, result = run(mlflow_restore, capsys, state="checked", store_dir=str(served), backup=backup)
    assert code == 0 and result["ok"] and result["live_problems"] == []
    code, result = run(mlflow_restore, capsys, state="live", store_dir=str(served), backup=backup)
    assert code == 0 and result["changed"] and result["kept"].startswith(str(served / "kept-before-restore-"))
    assert late not in {run.info.run_id for run in tracking.search_runs(["1"], "", 3)}
    tracking.engine.dispose()


def test_the_module_refuses_a_live_restore_it_cannot_vouch_for_and_changes_nothing(served, backup, capsys):
    from ansible_collections.mlops.mlflow.plugins.modules import mlflow_restore
    from ansible_collections.mlops.mlflow.tests.unit.plugins.modules.store_modules import run

    tracking = worker(served)
    in_flight = tracking.create_run("1", "bob", int(time.time() * 1000), [], "in-flight").info.run_id
    tracking.engine.dispose()
    before = _store_read.store_info(str(served))["db"]["counts"]
    code, result = run(mlflow_restore, capsys, state="checked", store_dir=str(served), backup=backup)
    assert (
        code == 0
        and result["ok"]
        and result["live_problems"] == [f"1 run(s) in flight are not in the backup ({in_flight})"]
    )
    # The check asked to write (live=true) only reads, and returns the reason for the stopped way.
    code, result = run(mlflow_restore, capsys, state="checked", live=True, store_dir=str(served), backup=backup)
    assert code == 0 and not result["changed"] and result["written"] is None and len(result["live_problems"]) == 1
    code, result = run(mlflow_restore, capsys, state="live", store_dir=str(served), backup=backup)
    assert code == 1 and result["msg"].startswith(f"{backup} cannot be restored into the running MLflow: 1 run(s)")
    assert result["msg"].endswith("Restore it with MLflow stopped (state=restored). Nothing was changed.")
    assert _store_read.store_info(str(served))["db"]["counts"] == before
    assert not [name for name in os.listdir(served) if "restore" in name]
    code, result = run(mlflow_restore, capsys, state="live", store_dir=str(served), backup=backup, allow_running=True)
    assert code == 0 and result["changed"]


def test_the_check_with_live_writes_in_the_same_run_what_passed(served, backup, capsys):
    """state=checked, live=true: the restore's one module run on the live way."""
    from ansible_collections.mlops.mlflow.plugins.modules import mlflow_restore
    from ansible_collections.mlops.mlflow.tests.unit.plugins.modules.store_modules import run

    tracking = worker(served)
    late = finished_run(tracking)
    args = {"state": "checked", "live": True, "store_dir": str(served), "backup": backup}
    # Check mode: every check, nothing written.
    code, result = run(mlflow_restore, capsys, _ansible_check_mode=True, **args)
    assert code == 0 and result["changed"] and result["ok"] and result["live_problems"] == []
    assert result["written"] is None and "would write it into the running MLflow" in result["msg"]
    assert late in {run.info.run_id for run in tracking.search_runs(["1"], "", 3)}
    code, result = run(mlflow_restore, capsys, **args)
    assert code == 0 and result["changed"] and result["ok"] and result["live_problems"] == []
    written = result["written"]
    assert written["live"] and written["kept"].startswith(str(served / "kept-before-restore-"))
    # What it wrote, beside the manifest's counts (which the check returns).
    assert written["counts"] == result["counts"]
    assert late not in {run.info.run_id for run in tracking.search_runs(["1"], "", 3)}
    tracking.engine.dispose()


def test_the_check_with_live_puts_back_what_a_failed_write_did(served, backup, capsys, monkeypatch):
    """A fault after the live databases were copied aside and mlruns/'s entries moved: all put back, and said."""
    from ansible_collections.mlops.mlflow.plugins.modules import mlflow_restore
    from ansible_collections.mlops.mlflow.tests.unit.plugins.modules.store_modules import run

    tracking = worker(served)
    late = finished_run(tracking)
    tracking.engine.dispose()

    def files():
        return {str(path): path.read_bytes() for path in sorted((served / "mlruns").rglob("*")) if path.is_file()}

    before = (_store_read.store_info(str(served))["db"]["counts"], files(), sorted(os.listdir(served)))
    pages = _live.copy_pages
    calls = []

    def fail_on_the_live_database(source, dest):
        calls.append(dest)
        # Once: the way back writes the kept pages into the same file.
        if dest.startswith(str(served / "db")) and len([call for call in calls if call == dest]) == 1:
            raise sqlite3.OperationalError("disk I/O error")
        return pages(source, dest)

    monkeypatch.setattr(_live, "copy_pages", fail_on_the_live_database)
    code, result = run(mlflow_restore, capsys, state="checked", live=True, store_dir=str(served), backup=backup)
    assert code == 1 and "disk I/O error" in result["msg"] and "what was there before was put back" in result["msg"]
    assert result["msg"].endswith(f"MLflow was not stopped, and the backup {backup} is unchanged.")
    # The control: the fault came after the copies were kept.
    assert any("kept-before-restore-" in dest for dest in calls)
    # The database's pages are written back (its header's change counter moves), the artifacts renamed back.
    assert (_store_read.store_info(str(served))["db"]["counts"], files(), sorted(os.listdir(served))) == before
    tracking = worker(served)
    assert late in {run.info.run_id for run in tracking.search_runs(["1"], "", 3)}
    tracking.engine.dispose()


def insert_row(path, table, **values):
    """A row of an MLflow table, its other NOT NULL columns filled with placeholders of their type."""
    conn = sqlite3.connect(path)
    with conn:
        for _cid, name, kind, notnull, default, _pk in conn.execute(f"PRAGMA table_info({table})").fetchall():
            if name not in values and (notnull or _pk) and default is None:
                values[name] = 0 if "INT" in kind.upper() or "FLOAT" in kind.upper() else f"{name}-1"
        columns = ", ".join(values)
        conn.execute(f"INSERT INTO {table} ({columns}) VALUES ({', '.join('?' * len(values))})", list(values.values()))
    conn.close()


def test_gateway_rows_or_unfinished_jobs_that_a_restart_would_pick_up_refuse(served, tmp_path):
    live = served / "db" / "mlflow.db"
    tables = {row[0] for row in sqlite3.connect(live).execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"secrets", "endpoints", "jobs"} <= tables, "the template is not an MLflow 3 database"
    insert_row(live, "jobs", status=2)
    backup = _backup.create_backup(str(served), str(tmp_path / "backups"), "manual", now=_now(0))["path"]
    # Control: the same gateway rows and only finished jobs are no reason.
    assert _live.live_problems(str(served), backup) == []

    insert_row(live, "secrets")
    assert _live.live_problems(str(served), backup) == [
        "the AI Gateway's endpoints or secrets differ from the backup's (MLflow caches them)"
    ]

    conn = sqlite3.connect(live)
    with conn:
        conn.execute("DELETE FROM secrets")
    conn.close()
    insert_row(live, "jobs", id="pending-1", status=0)
    pending = _backup.create_backup(str(served), str(tmp_path / "backups"), "manual", now=_now(30))["path"]
    assert _live.live_problems(str(served), pending) == [
        "the backup has 1 unfinished job(s), which MLflow queues again only when it starts"
    ]


def test_a_store_without_mlruns_is_no_live_restore(served, backup):
    os.rename(served / "mlruns", served / "elsewhere")
    assert _live.live_problems(str(served), backup) == ["the live store has no mlruns/ folder"]
    assert _live.live_problems(str(served), backup, artifacts_local=False) == []


def test_mlflow_3s_roles_are_counted_by_the_backup_and_by_the_live_restore(served, tmp_path):
    """MLflow 3's roles, their grants and who holds them, made through its own auth store: a backup
    counts them as the database holds them, and a restore into the running store reports what it wrote."""
    from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore as AuthStore

    auth = AuthStore()
    auth.init_db(f"sqlite:///{served}/db/basic_auth.db")
    user = auth.create_user("carol", "carol-password-1")
    for name in ("vision", "speech"):
        role = auth.create_role(name, "default", f"the {name} group")
        auth.add_role_permission(role.id, "experiment", "*", "READ")
        auth.assign_role_to_user(user.id, role.id)
    auth.engine.dispose()
    conn = sqlite3.connect(served / "db" / "basic_auth.db")
    held = {
        table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        for table in ("users", "roles", "role_permissions", "user_role_assignments")
    }
    conn.close()
    assert held["roles"] >= 2 and held["role_permissions"] >= 2 and held["user_role_assignments"] >= 2

    summary = _backup.create_backup(str(served), str(tmp_path / "backups"), "manual", "3.17.2")
    assert {table: summary["auth"]["counts"][table] for table in held} == held
    assert summary["counts"]["workspaces"] == _store_read.store_info(str(served))["db"]["counts"]["workspaces"]

    # A role lost after the backup: the live restore writes the backup's rows back and says how many.
    conn = sqlite3.connect(served / "db" / "basic_auth.db")
    conn.execute("DELETE FROM user_role_assignments")
    conn.commit()
    conn.close()
    result = _live.restore_live(str(served), summary["path"])
    assert result["auth_counts"] == summary["auth"]["counts"]
    assert _store_read.store_info(str(served))["auth_db"]["counts"] == summary["auth"]["counts"]
