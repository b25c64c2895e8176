# -*- coding: utf-8 -*-
# Copyright (c) mlops.mlflow developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""roles/server/files/mlflow_migrate.py, the migration's row copy, between real MLflow databases.

The source is a store MLflow's own SQLAlchemy stores wrote (the pinned mlflow in the venv); the
target is a database MLflow initialised at the same revision (SQLite here: the copy and the
comparison are dialect-neutral; the Molecule scenario `postgres` runs them against PostgreSQL)."""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[4] / "roles" / "server" / "files"))
import mlflow_migrate


@pytest.fixture
def source(tmp_path):
    """mlflow.db with experiments, runs (one deleted), metrics, params, tags, a registered model, and basic_auth.db."""
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore as AuthStore
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as RegistryStore
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    tracking = SqlAlchemyStore(f"sqlite:///{tmp_path}/mlflow.db", str(tmp_path / "mlruns"))
    now = int(time.time() * 1000)
    for name in ("alpha", "beta"):
        experiment = tracking.create_experiment(name)
        for i in range(3):
            run = tracking.create_run(experiment, "ann", now, [], f"{name}-{i}").info.run_id
            metrics = [Metric("loss", 1.0 / (step + 1), now + step, step) for step in range(50)]
            metrics.append(Metric("nan", float("nan"), now, 0))
            tracking.log_batch(run, metrics, [Param("lr", "0.01"), Param("ü", "ñ")], [RunTag("team", "x\ty\nz")])
    tracking.delete_run(run)
    registry = RegistryStore(f"sqlite:///{tmp_path}/mlflow.db")
    registry.create_registered_model("model-a")
    for store in (tracking, registry):
        store.engine.dispose()
    auth = AuthStore()
    auth.init_db(f"sqlite:///{tmp_path}/basic_auth.db")
    auth.create_user("ann", "ann-password-123")
    auth.create_experiment_permission("1", "ann", "MANAGE")
    auth.engine.dispose()
    return [str(tmp_path / "mlflow.db"), str(tmp_path / "basic_auth.db")]


@pytest.fixture
def target(tmp_path):
    """An empty database at the same revisions, as `mlflow db upgrade` and the auth migration make it
    (MLflow's store also seeds the Default experiment, which the copy replaces)."""
    from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore as AuthStore
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    path = tmp_path / "target.db"
    SqlAlchemyStore(f"sqlite:///{path}", str(tmp_path / "t-mlruns")).engine.dispose()
    auth = AuthStore()
    auth.init_db(f"sqlite:///{path}")
    auth.engine.dispose()
    return path


def rows(path, sql):
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_every_row_is_copied_and_every_table_compares_equal(source, target):
    report = mlflow_migrate.migrate(source, f"sqlite:///{target}")
    assert report["ok"], report["problems"]
    tables = report["tables"]
    for name in ("experiments", "runs", "metrics", "params", "tags", "registered_models", "users"):
        assert tables[name]["source_rows"] == tables[name]["target_rows"] > 0, name
        assert tables[name]["source_sha256"] == tables[name]["target_sha256"], name
    assert tables["runs"]["target_rows"] == 6 and tables["metrics"]["target_rows"] == 6 * 51
    assert report["revision"]["source_tracking"] == report["revision"]["target_tracking"]
    assert report["revision"]["source_auth"] == report["revision"]["target_auth"]
    assert rows(target, "SELECT value FROM tags WHERE key = 'team'")[0] == ("x\ty\nz",)
    assert rows(target, "SELECT name FROM experiments ORDER BY experiment_id") == [("Default",), ("alpha",), ("beta",)]


def test_the_checksum_sees_a_changed_value_and_ignores_row_order(source, target):
    import sqlalchemy as sa

    mlflow_migrate.migrate(source, f"sqlite:///{target}")
    engine = sa.create_engine(f"sqlite:///{target}")
    metadata = sa.MetaData()
    metadata.reflect(engine)
    with engine.connect() as conn:
        before = mlflow_migrate.table_digest(conn, metadata.tables["metrics"])
    with engine.begin() as conn:
        # Same rows in another physical order: the checksum stays.
        conn.execute(sa.text("CREATE TABLE m2 AS SELECT * FROM metrics ORDER BY random()"))
        conn.execute(sa.text("DELETE FROM metrics"))
        conn.execute(sa.text("INSERT INTO metrics SELECT * FROM m2"))
        conn.execute(sa.text("DROP TABLE m2"))
    with engine.connect() as conn:
        assert mlflow_migrate.table_digest(conn, metadata.tables["metrics"]) == before
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE metrics SET value = value + 1e-12 WHERE step = 7 AND key = 'loss'"))
    with engine.connect() as conn:
        changed = mlflow_migrate.table_digest(conn, metadata.tables["metrics"])
    assert changed[0] == before[0] and changed[1] != before[1]
    engine.dispose()


def test_a_different_schema_revision_is_refused_before_anything_is_copied(source, target):
    conn = sqlite3.connect(target)
    with conn:
        conn.execute("UPDATE alembic_version SET version_num = 'older'")
    conn.close()
    report = mlflow_migrate.migrate(source, f"sqlite:///{target}")
    assert not report["ok"]
    assert report["problems"] == [
        f"the tracking schema revision differs: source {report['revision']['source_tracking']}, target older"
    ]
    assert report["tables"] == {}
    assert rows(target, "SELECT count(*) FROM runs") == [(0,)]


def test_a_source_table_the_target_lacks_is_named(source, target):
    conn = sqlite3.connect(source[0])
    with conn:
        conn.execute("CREATE TABLE local_extra (id INTEGER PRIMARY KEY)")
    conn.close()
    report = mlflow_migrate.migrate(source, f"sqlite:///{target}")
    assert report["problems"] == [f"table local_extra of {source[0]} does not exist in the target"]


def test_main_prints_one_json_line(source, target, capsys):
    assert mlflow_migrate.main(["--target", f"sqlite:///{target}", "--source", source[0], "--source", source[1]]) == 0
    [line] = capsys.readouterr().out.splitlines()
    assert json.loads(line)["ok"] is True


def test_main_fails_with_a_message_when_the_target_cannot_be_reached(source, capsys, tmp_path):
    assert mlflow_migrate.main(["--target", f"sqlite:///{tmp_path}/no/such/dir/x.db", "--source", source[0]]) == 1
    assert capsys.readouterr().err.startswith("mlflow_migrate: the copy failed and was rolled back: ")
