# -*- coding: utf-8 -*-
# Copyright (c) mlops.mlflow developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Reading a store (_store_read.py): counts, schema revisions, the image that wrote the data.

On real MLflow SQLite databases, made by MLflow's own stores (the pinned mlflow in the venv), and
on the PostgreSQL stand-in and the fake S3 of conftest.py."""

from __future__ import annotations

import os
import sqlite3

from ansible_collections.mlops.mlflow.plugins.module_utils import _store_read
from ansible_collections.mlops.mlflow.plugins.module_utils.mlflow_postgres import PostgresError
from ansible_collections.mlops.mlflow.tests.unit.plugins.module_utils.store_cases import StandIn


def test_store_info_reads_revision_counts_auth_and_image(served):
    info = _store_read.store_info(str(served))
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
    info = _store_read.store_info(str(tmp_path))["auth_db"]
    assert info["schema_revision"] == "8606fa83a998" and info["counts"]["users"] == 1


def test_store_info_reports_a_corrupt_database_instead_of_failing(served):
    (served / "db" / "mlflow.db").write_bytes(b"this is not a database" * 500)
    info = _store_read.store_info(str(served))
    assert "cannot be read" in info["db"]["error"]
    assert info["db"]["schema_revision"] is None


def test_store_info_of_a_missing_or_never_served_store(tmp_path):
    assert _store_read.store_info(str(tmp_path / "nothing"))["exists"] is False
    (tmp_path / "mlflow.db").touch()
    info = _store_read.store_info(str(tmp_path))
    assert info["db"]["exists"] and info["db"]["size"] == 0 and info["db"]["schema_revision"] is None


def test_revision_head_of_the_installed_mlflow_matches_a_served_store(served):
    """The database MLflow wrote carries the head revision the installed MLflow knows."""
    import mlflow
    from alembic.script import ScriptDirectory

    script = ScriptDirectory(os.path.join(os.path.dirname(mlflow.__file__), "store", "db_migrations"))
    assert _store_read.store_info(str(served))["db"]["schema_revision"] == script.get_current_head()


def test_store_info_reads_postgres_and_the_bucket_and_keeps_sqlite_apart(store_dir, objects):
    info = _store_read.store_info(str(store_dir), db=StandIn(), s3=objects[0])
    assert info["backend"] == "postgresql"
    assert info["db"]["schema_revision"] == "rev2" and info["db"]["counts"]["runs"] == 4
    assert info["auth_db"]["exists"] is False
    assert info["sqlite"]["exists"] is False
    assert info["artifacts"] == 3 and info["artifacts_error"] is None
    assert info["database_data"] == ["postgres"]
    assert info["compose_services"] == ["mlflow-server", "postgres", "s3"]


def test_store_info_reports_an_unreachable_database_instead_of_failing(store_dir):
    class Down(StandIn):
        def facts(self):
            raise PostgresError("Reading the PostgreSQL database failed (rc 2): could not translate host name")

    info = _store_read.store_info(str(store_dir), db=Down())
    assert info["db"]["error"].startswith("Reading the PostgreSQL database failed")
    assert info["auth_db"]["error"] is None


def test_the_image_that_wrote_the_data_is_the_mlflow_service_s_whatever_comes_first(store_dir):
    (store_dir / "docker-compose.yml").write_text(
        'name: mlflow\nservices:\n  postgres:\n    image: "mlops/postgres:17"\n'
        '  mlflow-server:\n    image: "mlops/mlflow:2.22.1-full"\n'
    )
    assert _store_read.store_info(str(store_dir))["compose_image"] == "mlops/mlflow:2.22.1-full"
    (store_dir / "docker-stack.yml").write_text('services:\n  mlflow-server:\n    image: "mlops/mlflow:3.17.2-full"\n')
    assert _store_read.store_info(str(store_dir))["compose_image"] == "mlops/mlflow:3.17.2-full"


def test_store_info_names_the_workspaces_that_hold_experiments(served, tmp_path):
    assert _store_read.store_info(str(served))["db"]["workspaces"] == ["default"]
    with sqlite3.connect(served / "db" / "mlflow.db") as conn:
        conn.execute(
            "UPDATE experiments SET workspace = 'vision' "
            "WHERE experiment_id = (SELECT max(experiment_id) FROM experiments)"
        )
    assert _store_read.store_info(str(served))["db"]["workspaces"] == ["default", "vision"]
    # Before MLflow 3's workspace column, and without a database: none.
    older = tmp_path / "older.db"
    with sqlite3.connect(older) as conn:
        conn.execute("CREATE TABLE experiments (experiment_id INTEGER, name TEXT)")
        conn.execute("INSERT INTO experiments VALUES (0, 'Default')")
    assert _store_read.database_info(str(older))["workspaces"] == []
    assert _store_read.database_info(str(tmp_path / "missing.db"))["workspaces"] == []
    assert "workspaces" not in _store_read.database_info(str(served / "db" / "basic_auth.db"), auth=True)
