# -*- coding: utf-8 -*-
# Copyright (c) mlops.mlflow developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Restores (_swap.py): a backup swapped into a stopped store, PostgreSQL and S3 loaded, a restore undone.

On real MLflow SQLite databases, and on the PostgreSQL stand-in and the fake S3."""

from __future__ import annotations

import os
import shutil

import pytest
from ansible_collections.mlops.mlflow.plugins.module_utils import _backup, _store_read, _swap
from ansible_collections.mlops.mlflow.tests.unit.plugins.module_utils.store_cases import StandIn, _now


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
    return _backup.create_backup(str(served), str(tmp_path / "backups"), "manual", now=_now(0))["path"]


def test_swap_in_replaces_a_corrupt_store_and_keeps_it_aside_unread(served, backup):
    (served / "db" / "mlflow.db").write_bytes(b"corrupt" * 1000)
    (served / "db" / "mlflow.db-journal").write_bytes(b"stale journal")
    (served / "mlruns" / "stray.txt").write_text("not in the backup")
    before = snapshot(served)
    result = _swap.swap_in(str(served), backup, now=_now(60))
    assert result["kept"] == str(served / "kept-before-restore-20261126T100100Z")
    assert sorted(result["moved_aside"]) == ["db", "mlruns"]
    kept = snapshot(result["kept"])
    assert kept == {name: data for name, data in before.items() if name != "docker-compose.yml"}
    assert "db/mlflow.db-journal" in kept and not (served / "db" / "mlflow.db-journal").exists()
    assert _store_read.store_info(str(served))["db"]["counts"]["runs"] == 3
    assert oct(os.stat(served / "db" / "mlflow.db").st_mode & 0o777) == "0o666"
    assert oct(os.stat(served / "db").st_mode & 0o777) == "0o777"
    assert oct(os.stat(served / "mlruns").st_mode & 0o777) == "0o777"
    assert (served / "docker-compose.yml").exists()
    assert not [name for name in os.listdir(served) if name.startswith(".restore-")]


def test_swap_in_into_an_empty_or_missing_store(backup, tmp_path):
    result = _swap.swap_in(str(tmp_path / "new-store"), backup, now=_now(60))
    assert result["kept"] is None
    assert _store_read.store_info(str(tmp_path / "new-store"))["db"]["counts"]["runs"] == 3


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
    with pytest.raises(_store_read.StoreError, match="No space left on device; the previous data was put back"):
        _swap.swap_in(str(served), backup, now=_now(60))
    monkeypatch.setattr(os, "rename", real_rename)
    assert snapshot(served) == before
    assert sorted(os.listdir(served)) == ["db", "docker-compose.yml", "mlruns"]


def test_a_failed_staging_copy_changes_nothing(served, backup):
    os.unlink(os.path.join(backup, "mlflow.db"))
    shutil.rmtree(os.path.join(backup, "mlruns"))
    before = snapshot(served)
    with pytest.raises(_store_read.StoreError, match="nothing was changed"):
        _swap.swap_in(str(served), backup, now=_now(60))
    assert snapshot(served) == before


def test_put_back_undoes_a_swap(served, backup):
    (served / "mlruns" / "newer.txt").write_text("written after the backup")
    before = snapshot(served)
    result = _swap.swap_in(str(served), backup, now=_now(60))
    _swap.put_back(str(served), result["kept"])
    assert snapshot(served) == before
    assert not os.path.exists(result["kept"])


def test_restore_moves_the_service_data_aside_unread_and_stages_only_files(store_dir, objects, tmp_path):
    summary = _backup.create_backup(str(store_dir), str(tmp_path / "b"), "manual", db=StandIn(), s3=objects[0])
    (store_dir / "s3" / "unreadable").write_bytes(b"x")
    os.chmod(store_dir / "s3" / "unreadable", 0)
    swapped = _swap.swap_in(str(store_dir), summary["path"], now=_now(5), artifacts_local=False)
    assert sorted(swapped["moved_aside"]) == ["postgres", "s3"]
    assert swapped["restored"] == []
    kept = swapped["kept"]
    assert sorted(os.listdir(kept)) == ["postgres", "s3"]
    assert not (store_dir / "postgres").exists() and not (store_dir / "mlruns").exists()
    # The services then start on empty data; a failed load puts everything back.
    (store_dir / "postgres").mkdir()
    (store_dir / "postgres" / "half-loaded").write_text("x")
    _swap.put_back(str(store_dir), kept)
    assert (store_dir / "postgres" / "PG_VERSION").read_text() == "17\n"
    assert not (store_dir / "postgres" / "half-loaded").exists()


def test_local_artifacts_of_a_postgres_backup_are_staged_as_before(store_dir, objects, tmp_path):
    summary = _backup.create_backup(str(store_dir), str(tmp_path / "b"), "manual", db=StandIn(), s3=objects[0])
    swapped = _swap.swap_in(str(store_dir), summary["path"], now=_now(5))
    assert swapped["restored"] == ["mlruns"]
    assert (store_dir / "mlruns" / "1" / "r2" / "artifacts" / "a.txt").read_bytes() == b"a"


def test_load_fills_the_empty_database_and_bucket_and_checks_every_object(store_dir, objects, fake_s3, tmp_path):
    server, client, _credentials = fake_s3
    summary = _backup.create_backup(str(store_dir), str(tmp_path / "b"), "manual", db=StandIn(), s3=objects[0])
    server.buckets.clear()
    empty = StandIn(facts="tables=0\n")
    result = _swap.load_backup(summary["path"], db=empty, s3=(client, "mlflow"), scratch=str(tmp_path / "s"))
    assert empty.loaded == b"PGDMP custom dump"
    assert result["artifacts"]["source"] == result["artifacts"]["target"] == 3
    assert result["artifacts"]["source_sha256"] == result["artifacts"]["target_sha256"]
    server.tamper["1/r2/artifacts/a.txt"] = b"b"
    with pytest.raises(
        _store_read.StoreError, match=r"does not hold the backup's artifacts: object 1/r2/artifacts/a.txt differs"
    ):
        _swap.load_backup(summary["path"], s3=(client, "mlflow"), scratch=str(tmp_path / "s"))
    with pytest.raises(_store_read.StoreError, match="already holds tables"):
        _swap.load_backup(summary["path"], db=StandIn())


def test_set_aside_moves_only_what_exists(store_dir):
    kept = _swap.set_aside(str(store_dir), ["postgres", "s3", "mlruns"], "migration-failed", now=_now(0))
    assert kept.endswith("migration-failed-20261126T100000Z")
    assert sorted(os.listdir(kept)) == ["postgres", "s3"]
    assert _swap.set_aside(str(store_dir), ["postgres"], "again") is None


def test_a_store_of_an_earlier_release_is_read_and_restored_in_place(legacy, tmp_path):
    """Releases before 0.5.0 kept the databases at the store's top: read there, and a restore puts them in db/."""
    assert _store_read.store_info(str(legacy))["db"]["counts"]["runs"] == 3
    assert _store_read.store_info(str(legacy))["auth_db"]["counts"]["users"] == 1
    backup = _backup.create_backup(str(legacy), str(tmp_path / "backups"), "manual", now=_now(0))["path"]
    assert {"mlflow.db", "basic_auth.db"} <= set(os.listdir(backup))
    result = _swap.swap_in(str(legacy), backup, now=_now(60))
    assert sorted(result["moved_aside"]) == ["basic_auth.db", "mlflow.db", "mlruns"]
    assert sorted(os.listdir(legacy)) == ["db", "docker-compose.yml", "kept-before-restore-20261126T100100Z", "mlruns"]
    assert _store_read.store_info(str(legacy))["db"]["counts"]["runs"] == 3


def test_adopt_db_dir_moves_the_databases_and_journals_into_db(legacy):
    (legacy / "mlflow.db-journal").write_bytes(b"hot journal")
    os.chmod(legacy / "mlflow.db", 0o600)
    before = {name: (legacy / name).read_bytes() for name in ("mlflow.db", "basic_auth.db", "mlflow.db-journal")}
    assert sorted(_swap.adopt_db_dir(str(legacy))) == ["basic_auth.db", "mlflow.db", "mlflow.db-journal"]
    assert {name: (legacy / "db" / name).read_bytes() for name in before} == before
    assert sorted(os.listdir(legacy)) == ["db", "docker-compose.yml", "mlruns"]
    assert oct(os.stat(legacy / "db").st_mode & 0o777) == "0o777"
    assert oct(os.stat(legacy / "db" / "mlflow.db").st_mode & 0o777) == "0o666"
    assert _swap.adopt_db_dir(str(legacy)) == []


def test_adopt_db_dir_finishes_a_move_that_was_cut_off(legacy):
    (legacy / "db").mkdir()
    os.rename(legacy / "mlflow.db", legacy / "db" / "mlflow.db")
    assert _store_read.store_info(str(legacy))["auth_db"]["counts"]["users"] == 1
    assert _swap.adopt_db_dir(str(legacy)) == ["basic_auth.db"]
    assert sorted(os.listdir(legacy / "db")) == ["basic_auth.db", "mlflow.db"]


@pytest.mark.parametrize("case", ["in both places", "a link", "db is a link"])
def test_adopt_db_dir_refuses_before_moving_anything(legacy, tmp_path, case):
    if case == "in both places":
        (legacy / "db").mkdir()
        (legacy / "db" / "basic_auth.db").write_bytes(b"another")
        expected = "basic_auth.db is in db/ too"
    elif case == "a link":
        os.rename(legacy / "basic_auth.db", tmp_path / "elsewhere.db")
        os.symlink(tmp_path / "elsewhere.db", legacy / "basic_auth.db")
        expected = "basic_auth.db is not a plain file"
    else:
        (tmp_path / "outside").mkdir()
        os.symlink(tmp_path / "outside", legacy / "db")
        expected = "db is not a plain folder"
    before = sorted(os.listdir(legacy))
    with pytest.raises(_store_read.StoreError, match=f"{expected}.*Nothing was moved"):
        _swap.adopt_db_dir(str(legacy))
    assert sorted(os.listdir(legacy)) == before and (legacy / "mlflow.db").is_file()
    assert not os.listdir(tmp_path / "outside") if case == "db is a link" else True
