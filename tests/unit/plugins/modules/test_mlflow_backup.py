# -*- coding: utf-8 -*-
# Copyright (c) mlops.mlflow developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""mlflow_backup run the way Ansible runs it, on a store made of real SQLite files."""

from __future__ import annotations

import json
import os
import time

from ansible_collections.mlops.mlflow.plugins.modules import mlflow_backup, mlflow_restore
from ansible_collections.mlops.mlflow.tests.unit.plugins.modules.store_modules import run


def test_backup_reports_what_it_wrote_and_the_check_accepts_it(store, tmp_path, capsys):
    code, result = run(
        mlflow_backup, capsys, store_dir=str(store), backup_dir=str(tmp_path / "b"), mlflow_version="3.17.2"
    )
    assert code == 0 and result["changed"]
    assert result["counts"]["runs"] == 2 and result["counts"]["artifacts"] == 1
    assert result["schema_revision"] == "abc123"
    assert result["msg"].startswith("Backup of MLflow 3.17.2 (schema abc123): 0 experiments, 2 runs, 1 artifact files")
    code, checked = run(
        mlflow_restore, capsys, store_dir=str(store), backup=result["path"], known_revisions=["abc123"], head="abc123"
    )
    assert code == 0 and checked["ok"] and not checked["changed"] and checked["needs_upgrade"] is False


def test_backup_in_check_mode_writes_nothing(store, tmp_path, capsys):
    code, result = run(
        mlflow_backup, capsys, store_dir=str(store), backup_dir=str(tmp_path / "b"), _ansible_check_mode=True
    )
    assert code == 0 and result["changed"] and result["path"] is None
    assert not (tmp_path / "b").exists()


def test_backup_refuses_bad_arguments_naming_them(store, tmp_path, capsys):
    code, result = run(mlflow_backup, capsys, store_dir=str(store), backup_dir=str(tmp_path / "b"), keep=0)
    assert code == 1 and result["msg"] == "keep must be at least 1, got 0."
    code, result = run(mlflow_backup, capsys, store_dir=str(store), backup_dir=str(tmp_path / "b"), label="Pre Upgrade")
    assert code == 1 and "label must be lower-case letters, digits and '-'" in result["msg"]
    code, result = run(mlflow_backup, capsys, store_dir=str(tmp_path / "none"), backup_dir=str(tmp_path / "b"))
    assert code == 1 and "is not a directory: there is nothing to back up" in result["msg"]


def test_backup_warns_about_what_it_leaves_out(store, tmp_path, capsys):
    os.symlink("/etc", store / "mlruns" / "1" / "r1" / "artifacts" / "etc")
    code, backup = run(mlflow_backup, capsys, store_dir=str(store), backup_dir=str(tmp_path / "b"))
    assert code == 0
    where = store / "mlruns" / "1" / "r1" / "artifacts"
    assert backup["skipped"] == [f"etc in {where} (a symbolic link)"]
    assert [warning["event"]["msg"] for warning in backup["warnings"]] == [
        f"Left out of the backup {backup['path']}: etc in {where} (a symbolic link). "
        "A backup holds only folders and files."
    ]
    assert not os.path.lexists(os.path.join(backup["path"], "mlruns", "1", "r1", "artifacts", "etc"))


def test_each_backup_run_records_its_outcome_and_a_failure_keeps_the_last_good_one(store, tmp_path, capsys):
    """last_run.json (what the server's metrics read): the newest attempt, whether it worked or not."""
    backups = tmp_path / "b"
    code, good = run(mlflow_backup, capsys, store_dir=str(store), backup_dir=str(backups))
    assert code == 0
    record = json.loads((backups / "last_run.json").read_text())
    assert record["ok"] is True and record["name"] == good["name"] and record["bytes"] == good["bytes"]
    assert record["error"] is None and abs(record["time"] - time.time()) < 60
    assert oct((backups / "last_run.json").stat().st_mode & 0o777) == "0o600"
    db = next(path for path in (store / "db" / "mlflow.db", store / "mlflow.db") if path.exists())
    db.write_bytes(b"not a database, " * 64)
    code, failed = run(mlflow_backup, capsys, store_dir=str(store), backup_dir=str(backups))
    assert code == 1
    record = json.loads((backups / "last_run.json").read_text())
    assert record["ok"] is False and record["name"] is None and record["error"] == failed["msg"]
    # The failed attempt left no backup behind: the good one is still the newest.
    assert sorted(path.name for path in backups.iterdir() if not path.name.startswith(".")) == [
        good["name"],
        "last_run.json",
    ]
