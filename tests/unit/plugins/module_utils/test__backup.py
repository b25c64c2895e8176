# -*- coding: utf-8 -*-
# Copyright (c) mlops.mlflow developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Backups and their checks (_backup.py): manifest, checksums, integrity, anomaly marking, retention.

On real MLflow SQLite databases, and on PostgreSQL (a stand-in with the helper's interface) and S3
(the fake endpoint of tests/unit/plugins/conftest.py, with signatures checked): one manifest format,
the same checksums, anomaly marking and retention for every backend."""

from __future__ import annotations

import json
import os
import sqlite3

import pytest
from ansible_collections.mlops.mlflow.plugins.module_utils import _backup, _store_read
from ansible_collections.mlops.mlflow.plugins.module_utils.mlflow_postgres import DUMP
from ansible_collections.mlops.mlflow.tests.unit.plugins.module_utils.store_cases import FACTS, StandIn, _now


def write_rows(path, sql):
    conn = sqlite3.connect(path)
    with conn:
        conn.execute(sql)
    conn.close()


def test_backup_copies_databases_artifacts_and_compose_with_checked_manifest(served, tmp_path):
    summary = _backup.create_backup(str(served), str(tmp_path / "backups"), "manual", "3.17.2", now=_now(0))
    path = summary["path"]
    assert os.path.basename(path) == "20261126T100000Z-manual"
    assert sorted(os.listdir(path)) == ["basic_auth.db", "docker-compose.yml", "manifest.json", "mlflow.db", "mlruns"]
    assert summary["counts"]["runs"] == 3 and summary["counts"]["artifacts"] == 2
    assert summary["auth"]["counts"]["users"] == 1
    assert summary["anomaly"] is None
    manifest = json.loads((tmp_path / "backups" / summary["name"] / "manifest.json").read_text())
    assert set(manifest["files"]) == {
        "mlflow.db",
        "basic_auth.db",
        "docker-compose.yml",
        "mlruns/1/" + os.listdir(served / "mlruns" / "1")[0] + "/artifacts/model.bin",
        "mlruns/1/" + os.listdir(served / "mlruns" / "1")[0] + "/artifacts/notes.txt",
    }
    assert _backup.verify_backup(path)["ok"]


def test_backup_is_private_from_the_first_byte(served, tmp_path):
    summary = _backup.create_backup(str(served), str(tmp_path / "backups"), "manual", now=_now(0))
    assert os.stat(tmp_path / "backups").st_mode & 0o777 == 0o700
    assert os.stat(summary["path"]).st_mode & 0o777 == 0o700
    for directory, _subdirs, names in os.walk(summary["path"]):
        for name in names:
            assert os.stat(os.path.join(directory, name)).st_mode & 0o077 == 0, name


def test_backup_of_a_corrupt_database_fails_and_leaves_no_folder(served, tmp_path):
    (served / "db" / "mlflow.db").write_bytes(b"\0garbage" * 4096)
    with pytest.raises(_store_read.StoreError, match=r"cannot be copied.*restore a backup"):
        _backup.create_backup(str(served), str(tmp_path / "backups"), "manual", now=_now(0))
    assert os.listdir(tmp_path / "backups") == []


def test_backup_of_a_never_served_store_holds_an_empty_database(tmp_path):
    (tmp_path / "store" / "db").mkdir(parents=True)
    (tmp_path / "store" / "db" / "mlflow.db").touch()
    summary = _backup.create_backup(str(tmp_path / "store"), str(tmp_path / "backups"), "manual", now=_now(0))
    assert summary["schema_revision"] is None and summary["counts"]["runs"] == 0
    assert _backup.verify_backup(summary["path"])["ok"]


def test_a_backup_after_the_runs_vanished_is_marked(served, tmp_path):
    backups = str(tmp_path / "backups")
    assert _backup.create_backup(str(served), backups, "manual", now=_now(0))["anomaly"] is None
    write_rows(served / "db" / "mlflow.db", "UPDATE runs SET lifecycle_stage = 'deleted'")
    marked = _backup.create_backup(str(served), backups, "manual", now=_now(1))
    assert marked["anomaly"] == "active runs fell from 2 to 0 since the backup 20261126T100000Z-manual"


def test_a_gc_of_deleted_runs_is_no_anomaly(served, tmp_path):
    backups = str(tmp_path / "backups")
    _backup.create_backup(str(served), backups, "manual", now=_now(0))
    # What mlflow gc does: remove the runs marked deleted (and their rows).
    for table in ("metrics", "params", "tags", "latest_metrics"):
        write_rows(
            served / "db" / "mlflow.db",
            f"DELETE FROM {table} WHERE run_uuid IN (SELECT run_uuid FROM runs WHERE lifecycle_stage = 'deleted')",
        )
    write_rows(served / "db" / "mlflow.db", "DELETE FROM runs WHERE lifecycle_stage = 'deleted'")
    after = _backup.create_backup(str(served), backups, "manual", now=_now(1))
    assert after["counts"]["runs"] == 2 and after["anomaly"] is None


def test_retention_keeps_the_newest_and_never_the_last_good_copy_or_a_marked_one(served, tmp_path):
    backups = str(tmp_path / "backups")
    good = _backup.create_backup(str(served), backups, "manual", now=_now(0))["path"]
    write_rows(served / "db" / "mlflow.db", "UPDATE runs SET lifecycle_stage = 'deleted'")
    marked = _backup.create_backup(str(served), backups, "manual", now=_now(1))["path"]
    routine = [_backup.create_backup(str(served), backups, "manual", now=_now(2 + i))["path"] for i in range(5)]
    delete, kept = _backup.retention(backups, keep=2)
    assert delete == routine[:3]
    assert kept == {
        os.path.basename(good): "the newest backup holding data",
        os.path.basename(marked): "marked: active runs fell from 2 to 0 since the backup 20261126T100000Z-manual",
    }


def test_retention_keeps_protected_paths(served, tmp_path):
    backups = str(tmp_path / "backups")
    paths = [_backup.create_backup(str(served), backups, "manual", now=_now(i))["path"] for i in range(3)]
    delete, kept = _backup.retention(backups, keep=1, protect=[paths[0]])
    assert delete == [] or delete == [paths[1]]
    assert kept[os.path.basename(paths[0])] == "protected"
    # The newest backup holding data is the kept one (the newest), so paths[1] goes.
    assert delete == [paths[1]]


def test_verify_names_a_changed_file_and_a_missing_one(served, tmp_path):
    path = _backup.create_backup(str(served), str(tmp_path / "backups"), "manual", now=_now(0))["path"]
    with open(os.path.join(path, "mlflow.db"), "r+b") as handle:
        handle.seek(4096)
        byte = handle.read(1)
        handle.seek(4096)
        handle.write(bytes([byte[0] ^ 0xFF]))
    os.unlink(os.path.join(path, "docker-compose.yml"))
    result = _backup.verify_backup(path)
    assert not result["ok"]
    assert result["problems"] == [
        "misses docker-compose.yml",
        "has a changed mlflow.db (sha256 differs from the manifest)",
    ]


def test_verify_refuses_a_schema_the_image_does_not_know(served, tmp_path):
    path = _backup.create_backup(str(served), str(tmp_path / "backups"), "manual", "3.17.2", now=_now(0))["path"]
    revision = _backup.read_manifest(path)["schema_revision"]
    older = _backup.verify_backup(path, known_revisions=["aaa", "bbb"], head="bbb", image_version="2.22.1")
    assert not older["ok"] and older["schema_known"] is False
    assert older["problems"] == [
        f"holds schema revision {revision} written by MLflow 3.17.2, newer than MLflow 2.22.1 knows (its newest is bbb)"
    ]
    same = _backup.verify_backup(path, known_revisions=["aaa", revision], head=revision, image_version="3.17.2")
    assert same["ok"] and same["needs_upgrade"] is False
    newer = _backup.verify_backup(path, known_revisions=[revision, "ccc"], head="ccc", image_version="3.18.0")
    assert newer["ok"] and newer["needs_upgrade"] is True


def test_verify_of_a_folder_without_or_with_a_broken_manifest(tmp_path):
    assert _backup.verify_backup(str(tmp_path / "nothing"))["problems"] == ["does not exist or holds no manifest.json"]
    (tmp_path / "manifest.json").write_text("{not json")
    assert _backup.verify_backup(str(tmp_path))["problems"] == ["has an unreadable manifest.json"]


def test_backup_holds_the_dump_and_every_object_with_one_manifest_format(store_dir, objects, tmp_path):
    s3, digests = objects
    summary = _backup.create_backup(
        str(store_dir), str(tmp_path / "b"), "manual", "3.17.2", now=_now(0), db=StandIn(), s3=s3
    )
    assert summary["backend"] == "postgresql" and summary["artifacts_store"] == "s3"
    assert summary["schema_revision"] == "rev2"
    assert summary["counts"] == {
        "experiments": 2,
        "runs": 4,
        "runs_active": 4,
        "metrics": 800,
        "params": 0,
        "tags": 0,
        "workspaces": 0,
        "artifacts": 3,
    }
    manifest = json.loads((tmp_path / "b" / summary["name"] / "manifest.json").read_text())
    assert {name: entry["sha256"] for name, entry in manifest["files"].items() if name.startswith("mlruns/")} == {
        f"mlruns/{key}": digest for key, digest in digests.items()
    }
    assert DUMP in manifest["files"] and "mlflow.db" not in manifest["files"]
    checked = _backup.verify_backup(summary["path"], ["rev1", "rev2"], "rev2", "3.17.2", StandIn(), "postgresql")
    assert checked["ok"], checked["problems"]
    assert checked["needs_upgrade"] is False


def test_the_managed_data_directories_are_never_copied_into_a_backup(store_dir, objects, tmp_path):
    (store_dir / "postgres" / "base").mkdir()
    (store_dir / "postgres" / "base" / "1").write_bytes(b"live pages")
    summary = _backup.create_backup(str(store_dir), str(tmp_path / "b"), "manual", db=StandIn(), s3=objects[0])
    assert sorted(os.listdir(summary["path"])) == ["docker-compose.yml", "manifest.json", DUMP, "mlruns"]


def test_checks_refuse_a_backup_of_the_other_backend_or_a_damaged_dump(store_dir, objects, tmp_path):
    summary = _backup.create_backup(str(store_dir), str(tmp_path / "b"), "manual", db=StandIn(), s3=objects[0])
    checked = _backup.verify_backup(summary["path"], backend="sqlite")
    assert checked["problems"] == ["was taken from a postgresql store, not from a sqlite one"]
    assert checked["backend"] == "postgresql"
    (tmp_path / "sqlite-store").mkdir()
    sqlite_backup = _backup.create_backup(str(tmp_path / "sqlite-store"), str(tmp_path / "c"), "manual")
    checked = _backup.verify_backup(sqlite_backup["path"], backend="postgresql")
    assert checked["problems"] == ["was taken from a sqlite store, not from a postgresql one"]
    assert checked["backend"] == "sqlite"
    damaged = StandIn(dump=b"garbage")
    summary = _backup.create_backup(str(store_dir), str(tmp_path / "d"), "manual", db=damaged, s3=objects[0])
    assert _backup.verify_backup(summary["path"], db=damaged)["problems"] == [
        f"has a {DUMP} that pg_restore cannot read"
    ]


def test_counts_follow_the_dump_and_a_sharp_drop_is_marked(store_dir, objects, tmp_path):
    backups = str(tmp_path / "b")
    _backup.create_backup(str(store_dir), backups, "manual", now=_now(0), db=StandIn(), s3=objects[0])
    emptied = StandIn(FACTS.replace("count:runs_active=4", "count:runs_active=1"))
    summary = _backup.create_backup(str(store_dir), backups, "manual", now=_now(1), db=emptied, s3=objects[0])
    assert (
        summary["anomaly"]
        == "active runs fell by more than half, from 4 to 1, since the backup 20261126T100000Z-manual"
    )
