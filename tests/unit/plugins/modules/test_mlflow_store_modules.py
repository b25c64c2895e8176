# -*- coding: utf-8 -*-
# Copyright (c) mlops.mlflow developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""mlflow_backup, mlflow_restore and mlflow_store_info run the way Ansible runs them (JSON args
in, JSON out), on a store made of real SQLite files."""

from __future__ import annotations

import json
import os
import sqlite3

import pytest
from ansible.module_utils.testing import patch_module_args
from ansible_collections.mlops.mlflow.plugins.modules import mlflow_backup, mlflow_restore, mlflow_store_info


def run(module, capsys, **args):
    with patch_module_args(args):
        with pytest.raises(SystemExit) as exit_info:
            module.main()
    return exit_info.value.code, json.loads(capsys.readouterr().out)


@pytest.fixture
def store(tmp_path):
    """A small store: an alembic revision, two active runs, one artifact."""
    path = tmp_path / "store"
    (path / "mlruns" / "1" / "r1" / "artifacts").mkdir(parents=True)
    (path / "mlruns" / "1" / "r1" / "artifacts" / "model.pkl").write_bytes(b"\x80\x04model")
    conn = sqlite3.connect(path / "mlflow.db")
    with conn:
        conn.execute("CREATE TABLE alembic_version (version_num TEXT)")
        conn.execute("INSERT INTO alembic_version VALUES ('abc123')")
        conn.execute("CREATE TABLE experiments (experiment_id INTEGER)")
        conn.execute("CREATE TABLE runs (run_uuid TEXT, lifecycle_stage TEXT)")
        conn.executemany("INSERT INTO runs VALUES (?, 'active')", [("r1",), ("r2",)])
    conn.close()
    return path


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


def test_restore_swaps_in_and_reverts(store, tmp_path, capsys):
    _code, backup = run(mlflow_backup, capsys, store_dir=str(store), backup_dir=str(tmp_path / "b"))
    (store / "mlruns" / "1" / "r1" / "artifacts" / "model.pkl").write_bytes(b"swapped by an attacker")
    code, swapped = run(mlflow_restore, capsys, state="restored", store_dir=str(store), backup=backup["path"])
    assert code == 0 and swapped["changed"]
    assert (store / "mlruns" / "1" / "r1" / "artifacts" / "model.pkl").read_bytes() == b"\x80\x04model"
    assert oct(os.stat(store / "mlflow.db").st_mode & 0o777) == "0o666"
    code, _reverted = run(mlflow_restore, capsys, state="reverted", store_dir=str(store), kept=swapped["kept"])
    assert code == 0
    assert (store / "mlruns" / "1" / "r1" / "artifacts" / "model.pkl").read_bytes() == b"swapped by an attacker"


def test_restore_in_check_mode_changes_nothing(store, tmp_path, capsys):
    _code, backup = run(mlflow_backup, capsys, store_dir=str(store), backup_dir=str(tmp_path / "b"))
    before = sorted(os.listdir(store))
    code, result = run(
        mlflow_restore, capsys, state="restored", store_dir=str(store), backup=backup["path"], _ansible_check_mode=True
    )
    assert code == 0 and result["changed"] and result["msg"].startswith("Would restore ")
    assert sorted(os.listdir(store)) == before


def test_restore_check_names_the_problem(store, tmp_path, capsys):
    code, result = run(mlflow_restore, capsys, store_dir=str(store), backup=str(tmp_path / "missing"))
    assert code == 0 and not result["ok"]
    assert result["msg"] == f"{tmp_path / 'missing'} does not exist or holds no manifest.json."


def test_restore_refuses_a_bad_mode(store, tmp_path, capsys):
    _code, backup = run(mlflow_backup, capsys, store_dir=str(store), backup_dir=str(tmp_path / "b"))
    code, result = run(
        mlflow_restore, capsys, state="restored", store_dir=str(store), backup=backup["path"], db_mode="rw-rw-rw-"
    )
    assert code == 1 and result["msg"] == "db_mode must be an octal mode such as '0666', got 'rw-rw-rw-'."


def test_store_info_lists_backups_with_their_marks(store, tmp_path, capsys):
    run(mlflow_backup, capsys, store_dir=str(store), backup_dir=str(tmp_path / "b"))
    code, info = run(mlflow_store_info, capsys, store_dir=str(store), backup_dir=str(tmp_path / "b"))
    assert code == 0 and not info["changed"]
    assert info["db"]["schema_revision"] == "abc123" and info["artifacts"] == 1
    [listed] = info["backups"]
    assert listed["label"] == "manual" and listed["counts"]["runs_active"] == 2 and listed["anomaly"] is None


def test_bucket_module_creates_once_and_counts(fake_s3, capsys):
    from ansible_collections.mlops.mlflow.plugins.modules import mlflow_s3_bucket

    server, _client, credentials = fake_s3
    spec = {"endpoint": server.endpoint, "bucket": "mlflow", "credentials_file": str(credentials)}
    code, result = run(mlflow_s3_bucket, capsys, s3=spec, _ansible_check_mode=True)
    assert code == 0 and result["changed"] and "mlflow" not in server.buckets
    code, result = run(mlflow_s3_bucket, capsys, s3=spec)
    assert code == 0 and result["created"] and result["objects"] == 0
    server.buckets["mlflow"]["1/r/artifacts/x"] = b"x"
    code, result = run(mlflow_s3_bucket, capsys, s3=spec)
    assert code == 0 and not result["changed"] and result["objects"] == 1


def test_bucket_module_names_unreadable_keys_and_a_stopped_container(tmp_path, capsys):
    from ansible_collections.mlops.mlflow.plugins.modules import mlflow_s3_bucket

    spec = {"endpoint": "http://127.0.0.1:9", "bucket": "mlflow", "credentials_file": str(tmp_path / "none")}
    code, result = run(mlflow_s3_bucket, capsys, s3=spec)
    assert code == 1 and result["msg"].startswith(f"s3.credentials_file: cannot read the S3 keys from {tmp_path}/none")
