# -*- coding: utf-8 -*-
# Copyright (c) mlops.mlflow developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The store logic behind backup, restore and store facts, on real MLflow SQLite databases.

The databases are made by MLflow's own stores (the pinned mlflow in the venv), so the schema,
the alembic revision and the rows are what a server writes."""

from __future__ import annotations

import datetime
import json
import os
import shutil
import sqlite3
import time

import pytest
from ansible_collections.mlops.mlflow.plugins.module_utils import mlflow_store as store


def _now(seconds):
    return datetime.datetime(2026, 11, 26, 10, 0, 0, tzinfo=datetime.timezone.utc) + datetime.timedelta(seconds=seconds)


@pytest.fixture(scope="session")
def template(tmp_path_factory):
    """A store served by MLflow: 1 experiment (+ Default), 3 runs (1 deleted), metrics, params, tags,
    2 artifact files, a basic_auth.db with 2 users. Made once, copied per test."""
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore as AuthStore
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    root = tmp_path_factory.mktemp("template")
    tracking = SqlAlchemyStore(f"sqlite:///{root}/mlflow.db", str(root / "mlruns"))
    experiment = tracking.create_experiment("unit")
    now = int(time.time() * 1000)
    runs = [tracking.create_run(experiment, "alice", now, [], f"run-{i}").info.run_id for i in range(3)]
    for run_id in runs:
        tracking.log_batch(
            run_id, [Metric("loss", 0.5, now, step) for step in range(4)], [Param("lr", "0.1")], [RunTag("team", "a")]
        )
    tracking.delete_run(runs[2])
    tracking.engine.dispose()
    (root / "mlruns" / "1" / runs[0] / "artifacts").mkdir(parents=True)
    (root / "mlruns" / "1" / runs[0] / "artifacts" / "model.bin").write_bytes(os.urandom(4096))
    (root / "mlruns" / "1" / runs[0] / "artifacts" / "notes.txt").write_text("notes\n")
    auth = AuthStore()
    auth.init_db(f"sqlite:///{root}/basic_auth.db")
    auth.create_user("alice", "alice-password-1")
    auth.engine.dispose()
    (root / "docker-compose.yml").write_text('services:\n  mlflow-server:\n    image: "mlops/mlflow:3.17.2"\n')
    return root


@pytest.fixture
def served(template, tmp_path):
    path = tmp_path / "store"
    shutil.copytree(template, path)
    return path


def write_rows(path, sql):
    conn = sqlite3.connect(path)
    with conn:
        conn.execute(sql)
    conn.close()


def test_store_info_reads_revision_counts_auth_and_image(served):
    info = store.store_info(str(served))
    assert info["exists"] and not info["marker"]
    assert info["db"]["schema_revision"] and info["db"]["error"] is None
    counts = info["db"]["counts"]
    assert {key: counts[key] for key in ("experiments", "runs", "runs_active", "metrics", "params")} == {
        "experiments": 2,
        "runs": 3,
        "runs_active": 2,
        "metrics": 12,
        "params": 3,
    }
    assert counts["tags"] >= 3  # ours and the ones MLflow sets on each run (run name, user...)
    assert info["auth_db"]["counts"]["users"] == 1
    assert info["auth_db"]["schema_revision"]
    assert info["artifacts"] == 2
    assert info["compose_image"] == "mlops/mlflow:3.17.2"


def test_store_info_reads_the_auth_revision_of_mlflow_2(tmp_path):
    """MLflow 2.x kept the auth database's revision in a plain alembic_version table."""
    conn = sqlite3.connect(tmp_path / "basic_auth.db")
    with conn:
        conn.execute("CREATE TABLE alembic_version (version_num TEXT)")
        conn.execute("INSERT INTO alembic_version VALUES ('8606fa83a998')")
        conn.execute("CREATE TABLE users (id INTEGER)")
        conn.execute("INSERT INTO users VALUES (1)")
    conn.close()
    info = store.store_info(str(tmp_path))["auth_db"]
    assert info["schema_revision"] == "8606fa83a998" and info["counts"]["users"] == 1


def test_store_info_reports_a_corrupt_database_instead_of_failing(served):
    (served / "mlflow.db").write_bytes(b"this is not a database" * 500)
    info = store.store_info(str(served))
    assert "cannot be read" in info["db"]["error"]
    assert info["db"]["schema_revision"] is None


def test_store_info_of_a_missing_or_never_served_store(tmp_path):
    assert store.store_info(str(tmp_path / "nothing"))["exists"] is False
    (tmp_path / "mlflow.db").touch()
    info = store.store_info(str(tmp_path))
    assert info["db"]["exists"] and info["db"]["size"] == 0 and info["db"]["schema_revision"] is None


def test_backup_copies_databases_artifacts_and_compose_with_checked_manifest(served, tmp_path):
    summary = store.create_backup(str(served), str(tmp_path / "backups"), "manual", "3.17.2", now=_now(0))
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
    assert store.verify_backup(path)["ok"]


def test_backup_is_private_from_the_first_byte(served, tmp_path):
    summary = store.create_backup(str(served), str(tmp_path / "backups"), "manual", now=_now(0))
    assert os.stat(tmp_path / "backups").st_mode & 0o777 == 0o700
    assert os.stat(summary["path"]).st_mode & 0o777 == 0o700
    for directory, _subdirs, names in os.walk(summary["path"]):
        for name in names:
            assert os.stat(os.path.join(directory, name)).st_mode & 0o077 == 0, name


def test_backup_of_a_corrupt_database_fails_and_leaves_no_folder(served, tmp_path):
    (served / "mlflow.db").write_bytes(b"\0garbage" * 4096)
    with pytest.raises(store.StoreError, match=r"cannot be copied.*restore a backup"):
        store.create_backup(str(served), str(tmp_path / "backups"), "manual", now=_now(0))
    assert os.listdir(tmp_path / "backups") == []


def test_backup_of_a_never_served_store_holds_an_empty_database(tmp_path):
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "mlflow.db").touch()
    summary = store.create_backup(str(tmp_path / "store"), str(tmp_path / "backups"), "manual", now=_now(0))
    assert summary["schema_revision"] is None and summary["counts"]["runs"] == 0
    assert store.verify_backup(summary["path"])["ok"]


def test_a_backup_after_the_runs_vanished_is_marked(served, tmp_path):
    backups = str(tmp_path / "backups")
    assert store.create_backup(str(served), backups, "manual", now=_now(0))["anomaly"] is None
    write_rows(served / "mlflow.db", "UPDATE runs SET lifecycle_stage = 'deleted'")
    marked = store.create_backup(str(served), backups, "manual", now=_now(1))
    assert marked["anomaly"] == "active runs fell from 2 to 0 since the backup 20261126T100000Z-manual"


def test_a_gc_of_deleted_runs_is_no_anomaly(served, tmp_path):
    backups = str(tmp_path / "backups")
    store.create_backup(str(served), backups, "manual", now=_now(0))
    # What mlflow gc does: remove the runs marked deleted (and their rows).
    for table in ("metrics", "params", "tags", "latest_metrics"):
        write_rows(
            served / "mlflow.db",
            f"DELETE FROM {table} WHERE run_uuid IN (SELECT run_uuid FROM runs WHERE lifecycle_stage = 'deleted')",
        )
    write_rows(served / "mlflow.db", "DELETE FROM runs WHERE lifecycle_stage = 'deleted'")
    after = store.create_backup(str(served), backups, "manual", now=_now(1))
    assert after["counts"]["runs"] == 2 and after["anomaly"] is None


def test_retention_keeps_the_newest_and_never_the_last_good_copy_or_a_marked_one(served, tmp_path):
    backups = str(tmp_path / "backups")
    good = store.create_backup(str(served), backups, "manual", now=_now(0))["path"]
    write_rows(served / "mlflow.db", "UPDATE runs SET lifecycle_stage = 'deleted'")
    marked = store.create_backup(str(served), backups, "manual", now=_now(1))["path"]
    routine = [store.create_backup(str(served), backups, "manual", now=_now(2 + i))["path"] for i in range(5)]
    delete, kept = store.retention(backups, keep=2)
    assert delete == routine[:3]
    assert kept == {
        os.path.basename(good): "the newest backup holding data",
        os.path.basename(marked): "marked: active runs fell from 2 to 0 since the backup 20261126T100000Z-manual",
    }


def test_retention_keeps_protected_paths(served, tmp_path):
    backups = str(tmp_path / "backups")
    paths = [store.create_backup(str(served), backups, "manual", now=_now(i))["path"] for i in range(3)]
    delete, kept = store.retention(backups, keep=1, protect=[paths[0]])
    assert delete == [] or delete == [paths[1]]
    assert kept[os.path.basename(paths[0])] == "protected"
    # The newest backup holding data is the kept one (the newest), so paths[1] goes.
    assert delete == [paths[1]]


def test_verify_names_a_changed_file_and_a_missing_one(served, tmp_path):
    path = store.create_backup(str(served), str(tmp_path / "backups"), "manual", now=_now(0))["path"]
    with open(os.path.join(path, "mlflow.db"), "r+b") as handle:
        handle.seek(4096)
        byte = handle.read(1)
        handle.seek(4096)
        handle.write(bytes([byte[0] ^ 0xFF]))
    os.unlink(os.path.join(path, "docker-compose.yml"))
    result = store.verify_backup(path)
    assert not result["ok"]
    assert result["problems"] == [
        "misses docker-compose.yml",
        "has a changed mlflow.db (sha256 differs from the manifest)",
    ]


def test_verify_refuses_a_schema_the_image_does_not_know(served, tmp_path):
    path = store.create_backup(str(served), str(tmp_path / "backups"), "manual", "3.17.2", now=_now(0))["path"]
    revision = store.read_manifest(path)["schema_revision"]
    older = store.verify_backup(path, known_revisions=["aaa", "bbb"], head="bbb", image_version="2.22.1")
    assert not older["ok"] and older["schema_known"] is False
    assert older["problems"] == [
        f"holds schema revision {revision} written by MLflow 3.17.2, newer than MLflow 2.22.1 knows (its newest is bbb)"
    ]
    same = store.verify_backup(path, known_revisions=["aaa", revision], head=revision, image_version="3.17.2")
    assert same["ok"] and same["needs_upgrade"] is False
    newer = store.verify_backup(path, known_revisions=[revision, "ccc"], head="ccc", image_version="3.18.0")
    assert newer["ok"] and newer["needs_upgrade"] is True


def test_verify_of_a_folder_without_or_with_a_broken_manifest(tmp_path):
    assert store.verify_backup(str(tmp_path / "nothing"))["problems"] == ["does not exist or holds no manifest.json"]
    (tmp_path / "manifest.json").write_text("{not json")
    assert store.verify_backup(str(tmp_path))["problems"] == ["has an unreadable manifest.json"]


def test_revision_head_of_the_installed_mlflow_matches_a_served_store(served):
    """The database MLflow wrote carries the head revision the installed MLflow knows."""
    import mlflow
    from alembic.script import ScriptDirectory

    script = ScriptDirectory(os.path.join(os.path.dirname(mlflow.__file__), "store", "db_migrations"))
    assert store.store_info(str(served))["db"]["schema_revision"] == script.get_current_head()


# --- swap_in and put_back ---------------------------------------------------------------------


def snapshot(root):
    """{relative path: bytes} of every file, to compare whole trees."""
    found = {}
    for directory, _subdirs, names in os.walk(root):
        for name in names:
            path = os.path.join(directory, name)
            found[os.path.relpath(path, root)] = open(path, "rb").read()
    return found


@pytest.fixture
def backup(served, tmp_path):
    return store.create_backup(str(served), str(tmp_path / "backups"), "manual", now=_now(0))["path"]


def test_swap_in_replaces_a_corrupt_store_and_keeps_it_aside_unread(served, backup):
    (served / "mlflow.db").write_bytes(b"corrupt" * 1000)
    (served / "mlflow.db-journal").write_bytes(b"stale journal")
    (served / "mlruns" / "stray.txt").write_text("not in the backup")
    before = snapshot(served)
    result = store.swap_in(str(served), backup, now=_now(60))
    assert result["kept"] == str(served / "kept-before-restore-20261126T100100Z")
    assert sorted(result["moved_aside"]) == ["basic_auth.db", "mlflow.db", "mlflow.db-journal", "mlruns"]
    kept = snapshot(result["kept"])
    assert kept == {name: data for name, data in before.items() if name != "docker-compose.yml"}
    assert not (served / "mlflow.db-journal").exists()
    assert store.store_info(str(served))["db"]["counts"]["runs"] == 3
    assert oct(os.stat(served / "mlflow.db").st_mode & 0o777) == "0o666"
    assert oct(os.stat(served / "mlruns").st_mode & 0o777) == "0o777"
    assert (served / "docker-compose.yml").exists()
    assert not [name for name in os.listdir(served) if name.startswith(".restore-")]


def test_swap_in_into_an_empty_or_missing_store(backup, tmp_path):
    result = store.swap_in(str(tmp_path / "new-store"), backup, now=_now(60))
    assert result["kept"] is None
    assert store.store_info(str(tmp_path / "new-store"))["db"]["counts"]["runs"] == 3


def test_a_failed_swap_puts_everything_back(served, backup, monkeypatch):
    """The second rename fails: the first move aside is undone and the store is as it was."""
    before = snapshot(served)
    real_rename = os.rename
    calls = []

    def failing_rename(src, dst):
        calls.append(src)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", failing_rename)
    with pytest.raises(store.StoreError, match="No space left on device; the previous data was put back"):
        store.swap_in(str(served), backup, now=_now(60))
    monkeypatch.setattr(os, "rename", real_rename)
    assert snapshot(served) == before
    assert sorted(os.listdir(served)) == ["basic_auth.db", "docker-compose.yml", "mlflow.db", "mlruns"]


def test_a_failed_staging_copy_changes_nothing(served, backup):
    os.unlink(os.path.join(backup, "mlflow.db"))
    shutil.rmtree(os.path.join(backup, "mlruns"))
    before = snapshot(served)
    with pytest.raises(store.StoreError, match="nothing was changed"):
        store.swap_in(str(served), backup, now=_now(60))
    assert snapshot(served) == before


def test_put_back_undoes_a_swap(served, backup):
    (served / "mlruns" / "newer.txt").write_text("written after the backup")
    before = snapshot(served)
    result = store.swap_in(str(served), backup, now=_now(60))
    store.put_back(str(served), result["kept"])
    assert snapshot(served) == before
    assert not os.path.exists(result["kept"])
