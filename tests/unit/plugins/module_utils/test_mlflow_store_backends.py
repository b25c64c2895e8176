# -*- coding: utf-8 -*-
# Copyright (c) mlops.mlflow developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The backend seam of the store logic: backups, checks and swap-in restores with PostgreSQL and S3.

PostgreSQL is a stand-in object with the helper's interface (dump, check_dump, facts, load); S3 is
the fake endpoint of conftest.py, with signatures checked. One manifest format, the same checksums,
anomaly marking and retention as for SQLite."""

from __future__ import annotations

import datetime
import json
import os

import pytest
from ansible_collections.mlops.mlflow.plugins.module_utils import mlflow_s3
from ansible_collections.mlops.mlflow.plugins.module_utils import mlflow_store as store
from ansible_collections.mlops.mlflow.plugins.module_utils.mlflow_postgres import DUMP, PostgresError, parse_facts

FACTS = "revision:tracking=rev2\ncount:experiments=2\ncount:runs=4\ncount:runs_active=4\ncount:metrics=800\ntables=30\n"


def _now(seconds):
    return datetime.datetime(2026, 11, 26, 10, 0, 0, tzinfo=datetime.timezone.utc) + datetime.timedelta(seconds=seconds)


class StandIn:
    """The Postgres helper's interface over an in-memory 'database' (its facts text and dump bytes)."""

    def __init__(self, facts=FACTS, dump=b"PGDMP custom dump"):
        self.text, self.bytes, self.loaded = facts, dump, None

    def facts(self):
        return parse_facts(self.text)

    def dump(self, dest):
        with open(os.path.join(dest, DUMP), "wb") as handle:
            handle.write(self.bytes)
        return self.facts()

    def check_dump(self, directory):
        with open(os.path.join(directory, DUMP), "rb") as handle:
            return [] if handle.read().startswith(b"PGDMP") else [f"has a {DUMP} that pg_restore cannot read"]

    def load(self, directory):
        if self.facts()["tables"]:
            raise PostgresError("the database already holds tables")
        with open(os.path.join(directory, DUMP), "rb") as handle:
            self.loaded = handle.read()
        return self.facts()


@pytest.fixture
def objects(fake_s3, tmp_path):
    """The fake bucket with three artifacts, as (client, bucket) and their sha256 by key."""
    _server, client, _credentials = fake_s3
    source = tmp_path / "artifacts"
    digests = {}
    for key, data in {
        "1/r1/artifacts/model.bin": os.urandom(5000),
        "1/r2/artifacts/a.txt": b"a",
        "2/r3/x": b"",
    }.items():
        (source / key).parent.mkdir(parents=True, exist_ok=True)
        (source / key).write_bytes(data)
        digests[key] = mlflow_s3.sha256_file(source / key)
    mlflow_s3.import_tree(client, "mlflow", str(source))
    return (client, "mlflow"), digests


@pytest.fixture
def store_dir(tmp_path):
    path = tmp_path / "store"
    (path / "postgres").mkdir(parents=True)
    (path / "postgres" / "PG_VERSION").write_text("17\n")
    (path / "s3").mkdir()
    (path / "docker-compose.yml").write_text(
        'services:\n  mlflow-server:\n    image: "mlops/mlflow:3.17.2-full"\n  postgres:\n    image: "x"\n  s3:\n'
    )
    return path


def test_backup_holds_the_dump_and_every_object_with_one_manifest_format(store_dir, objects, tmp_path):
    s3, digests = objects
    summary = store.create_backup(
        str(store_dir), str(tmp_path / "b"), "manual", "3.17.2", now=_now(0), postgres=StandIn(), s3=s3
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
        "artifacts": 3,
    }
    manifest = json.loads((tmp_path / "b" / summary["name"] / "manifest.json").read_text())
    assert {name: entry["sha256"] for name, entry in manifest["files"].items() if name.startswith("mlruns/")} == {
        f"mlruns/{key}": digest for key, digest in digests.items()
    }
    assert DUMP in manifest["files"] and "mlflow.db" not in manifest["files"]
    checked = store.verify_backup(summary["path"], ["rev1", "rev2"], "rev2", "3.17.2", StandIn(), "postgresql")
    assert checked["ok"], checked["problems"]
    assert checked["needs_upgrade"] is False


def test_the_managed_data_directories_are_never_copied_into_a_backup(store_dir, objects, tmp_path):
    (store_dir / "postgres" / "base").mkdir()
    (store_dir / "postgres" / "base" / "1").write_bytes(b"live pages")
    summary = store.create_backup(str(store_dir), str(tmp_path / "b"), "manual", postgres=StandIn(), s3=objects[0])
    assert sorted(os.listdir(summary["path"])) == ["docker-compose.yml", "manifest.json", DUMP, "mlruns"]


def test_checks_refuse_a_backup_of_the_other_backend_or_a_damaged_dump(store_dir, objects, tmp_path):
    summary = store.create_backup(str(store_dir), str(tmp_path / "b"), "manual", postgres=StandIn(), s3=objects[0])
    checked = store.verify_backup(summary["path"], backend="sqlite")
    assert checked["problems"] == [
        "was taken from a postgresql store, and mlflow_server_backend is sqlite; restore it with that backend"
    ]
    (tmp_path / "sqlite-store").mkdir()
    sqlite_backup = store.create_backup(str(tmp_path / "sqlite-store"), str(tmp_path / "c"), "manual")
    assert store.verify_backup(sqlite_backup["path"], backend="postgresql")["problems"] == [
        "was taken from a sqlite store, and mlflow_server_backend is postgresql; move a SQLite store with "
        "playbooks/migrate.yml"
    ]
    damaged = StandIn(dump=b"garbage")
    summary = store.create_backup(str(store_dir), str(tmp_path / "d"), "manual", postgres=damaged, s3=objects[0])
    assert store.verify_backup(summary["path"], postgres=damaged)["problems"] == [
        f"has a {DUMP} that pg_restore cannot read"
    ]


def test_counts_follow_the_dump_and_a_sharp_drop_is_marked(store_dir, objects, tmp_path):
    backups = str(tmp_path / "b")
    store.create_backup(str(store_dir), backups, "manual", now=_now(0), postgres=StandIn(), s3=objects[0])
    emptied = StandIn(FACTS.replace("count:runs_active=4", "count:runs_active=1"))
    summary = store.create_backup(str(store_dir), backups, "manual", now=_now(1), postgres=emptied, s3=objects[0])
    assert (
        summary["anomaly"]
        == "active runs fell by more than half, from 4 to 1, since the backup 20261126T100000Z-manual"
    )


def test_restore_moves_the_service_data_aside_unread_and_stages_only_files(store_dir, objects, tmp_path):
    summary = store.create_backup(str(store_dir), str(tmp_path / "b"), "manual", postgres=StandIn(), s3=objects[0])
    (store_dir / "s3" / "unreadable").write_bytes(b"x")
    os.chmod(store_dir / "s3" / "unreadable", 0)
    swapped = store.swap_in(str(store_dir), summary["path"], now=_now(5), artifacts_local=False)
    assert sorted(swapped["moved_aside"]) == ["postgres", "s3"]
    assert swapped["restored"] == []
    kept = swapped["kept"]
    assert sorted(os.listdir(kept)) == ["postgres", "s3"]
    assert not (store_dir / "postgres").exists() and not (store_dir / "mlruns").exists()
    # The services then start on empty data; a failed load puts everything back.
    (store_dir / "postgres").mkdir()
    (store_dir / "postgres" / "half-loaded").write_text("x")
    store.put_back(str(store_dir), kept)
    assert (store_dir / "postgres" / "PG_VERSION").read_text() == "17\n"
    assert not (store_dir / "postgres" / "half-loaded").exists()


def test_local_artifacts_of_a_postgres_backup_are_staged_as_before(store_dir, objects, tmp_path):
    summary = store.create_backup(str(store_dir), str(tmp_path / "b"), "manual", postgres=StandIn(), s3=objects[0])
    swapped = store.swap_in(str(store_dir), summary["path"], now=_now(5))
    assert swapped["restored"] == ["mlruns"]
    assert (store_dir / "mlruns" / "1" / "r2" / "artifacts" / "a.txt").read_bytes() == b"a"


def test_load_fills_the_empty_database_and_bucket_and_checks_every_object(store_dir, objects, fake_s3, tmp_path):
    server, client, _credentials = fake_s3
    summary = store.create_backup(str(store_dir), str(tmp_path / "b"), "manual", postgres=StandIn(), s3=objects[0])
    server.buckets.clear()
    empty = StandIn(facts="tables=0\n")
    result = store.load_backup(summary["path"], postgres=empty, s3=(client, "mlflow"), scratch=str(tmp_path / "s"))
    assert empty.loaded == b"PGDMP custom dump"
    assert result["artifacts"]["source"] == result["artifacts"]["target"] == 3
    assert result["artifacts"]["source_sha256"] == result["artifacts"]["target_sha256"]
    server.tamper["1/r2/artifacts/a.txt"] = b"b"
    with pytest.raises(
        store.StoreError, match=r"does not hold the backup's artifacts: object 1/r2/artifacts/a.txt differs"
    ):
        store.load_backup(summary["path"], s3=(client, "mlflow"), scratch=str(tmp_path / "s"))
    with pytest.raises(store.StoreError, match="already holds tables"):
        store.load_backup(summary["path"], postgres=StandIn())


def test_store_info_reads_postgres_and_the_bucket_and_keeps_sqlite_apart(store_dir, objects):
    info = store.store_info(str(store_dir), postgres=StandIn(), s3=objects[0])
    assert info["backend"] == "postgresql"
    assert info["db"]["schema_revision"] == "rev2" and info["db"]["counts"]["runs"] == 4
    assert info["auth_db"]["exists"] is False
    assert info["sqlite"]["exists"] is False
    assert info["artifacts"] == 3 and info["artifacts_error"] is None
    assert info["postgres_data"] is True
    assert info["compose_services"] == ["mlflow-server", "postgres", "s3"]


def test_store_info_reports_an_unreachable_database_instead_of_failing(store_dir):
    class Down(StandIn):
        def facts(self):
            raise PostgresError("Reading the PostgreSQL database failed (rc 2): could not translate host name")

    info = store.store_info(str(store_dir), postgres=Down())
    assert info["db"]["error"].startswith("Reading the PostgreSQL database failed")
    assert info["auth_db"]["error"] is None


def test_set_aside_moves_only_what_exists(store_dir):
    kept = store.set_aside(str(store_dir), ["postgres", "s3", "mlruns"], "migration-failed", now=_now(0))
    assert kept.endswith("migration-failed-20261126T100000Z")
    assert sorted(os.listdir(kept)) == ["postgres", "s3"]
    assert store.set_aside(str(store_dir), ["postgres"], "again") is None


def test_the_image_that_wrote_the_data_is_the_mlflow_service_s_whatever_comes_first(store_dir):
    (store_dir / "docker-compose.yml").write_text(
        'name: mlflow\nservices:\n  postgres:\n    image: "mlops/postgres:17"\n'
        '  mlflow-server:\n    image: "mlops/mlflow:2.22.1-full"\n'
    )
    assert store.store_info(str(store_dir))["compose_image"] == "mlops/mlflow:2.22.1-full"
    (store_dir / "docker-stack.yml").write_text('services:\n  mlflow-server:\n    image: "mlops/mlflow:3.17.2-full"\n')
    assert store.store_info(str(store_dir))["compose_image"] == "mlops/mlflow:3.17.2-full"
