# -*- coding: utf-8 -*-
# Copyright (c) mlops.mlflow developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The PostgreSQL helper builds the one-off containers' command lines and reads their answers.
A fake runner stands in for docker; the Molecule scenario `postgres` runs them for real."""

from __future__ import annotations

import pytest
from ansible_collections.mlops.mlflow.plugins.module_utils import mlflow_postgres as pg

SPEC = {
    "image": "mlops/postgres:17",
    "network": "mlflow_default",
    "uri": "postgresql+psycopg2://mlflow@mlflow-postgres:5432/mlflow",
    "pgpass_file": "/opt/mlflow/secrets/pgpass",
}
FACTS = "revision:tracking=1b5f0d9ad7c1\nrevision:auth=8606fa83a998\ncount:runs=3\ncount:runs_active=2\n"
FACTS += "count:metrics=12\ncount:users=2\ncount:roles=2\ncount:user_role_assignments=3\n"
FACTS += "count:workspaces=1\ntables=30\n"


class Runner:
    """Answers each docker command by the first word found in the command run in the container."""

    def __init__(self, answers):
        self.answers = answers
        self.calls = []

    def __call__(self, argv, data=None):
        self.calls.append((argv, data))
        command = argv[argv.index(SPEC["image"]) + 1 :]
        for word, answer in self.answers.items():
            if any(word in part for part in command):
                return answer(argv) if callable(answer) else answer
        raise AssertionError(f"unexpected command {argv}")


def test_facts_come_from_one_read_only_snapshot_without_a_password_anywhere():
    runner = Runner({"psql": (0, FACTS, "")})
    facts = pg.Postgres(SPEC, runner).facts()
    assert facts == {
        "schema_revision": "1b5f0d9ad7c1",
        "counts": {
            "experiments": 0,
            "runs": 3,
            "metrics": 12,
            "params": 0,
            "tags": 0,
            "workspaces": 1,
            "runs_active": 2,
        },
        "auth": {
            "schema_revision": "8606fa83a998",
            "counts": {
                "users": 2,
                "experiment_permissions": 0,
                "registered_model_permissions": 0,
                "roles": 2,
                "role_permissions": 0,
                "user_role_assignments": 3,
                "workspace_permissions": 0,
            },
        },
        "tables": 30,
    }
    [(argv, script)] = runner.calls
    assert argv[:6] == ["docker", "run", "--rm", "-i", "--network", "mlflow_default"]
    assert "/opt/mlflow/secrets/pgpass:/run/mlflow-pgpass:ro" in argv
    assert "PGPASSFILE=/run/mlflow-pgpass" in argv
    # libpq does not know SQLAlchemy's +driver.
    assert "MLFLOW_PG_URI=postgresql://mlflow@mlflow-postgres:5432/mlflow" in argv
    assert script.startswith("\\set ON_ERROR_STOP on")
    assert "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY;" in script


def test_a_never_served_database_has_no_revision_and_zero_counts():
    facts = pg.parse_facts("tables=0\n")
    assert facts["schema_revision"] is None and facts["auth"] is None and facts["tables"] == 0
    assert set(facts["counts"].values()) == {0}


def test_dump_counts_in_the_snapshot_it_exports_and_reads_the_dump_back(tmp_path):
    runner = Runner({"pg_restore": (0, "; TOC\n1; TABLE DATA public runs mlflow\n", ""), "psql": (0, FACTS, "")})
    facts = pg.Postgres(SPEC, runner).dump(str(tmp_path))
    assert facts["counts"]["runs"] == 3
    (dump_argv, script), (list_argv, _data) = runner.calls
    assert f"{tmp_path}:/work:rw" in dump_argv
    snapshot = script.index("pg_export_snapshot()")
    assert snapshot < script.index('pg_dump --format=custom --snapshot="$MLFLOW_SNAPSHOT"') < script.index("count(*)")
    assert script.rstrip().endswith("COMMIT;")
    # The dump is read back without any network or password.
    assert list_argv[list_argv.index("--network") + 1] == "none"
    assert list_argv[-3:] == ["pg_restore", "--list", "/work/mlflow.pgdump"]


def test_a_dump_pg_restore_cannot_read_fails_the_backup(tmp_path):
    runner = Runner({"pg_restore": (1, "", "pg_restore: error: input file is too short"), "psql": (0, FACTS, "")})
    with pytest.raises(pg.PostgresError, match=r"pg_dump wrote no usable mlflow\.pgdump: has a mlflow\.pgdump that "):
        pg.Postgres(SPEC, runner).dump(str(tmp_path))


def test_psql_failure_names_the_step_and_the_error():
    runner = Runner({"psql": (2, "", 'psql: error: could not translate host name "mlflow-postgres"')})
    with pytest.raises(pg.PostgresError, match=r"^Reading the PostgreSQL database failed \(rc 2\): psql: error"):
        pg.Postgres(SPEC, runner).facts()


def test_load_restores_only_into_an_empty_database(tmp_path):
    runner = Runner({"psql": (0, FACTS, "")})
    with pytest.raises(pg.PostgresError, match="already holds 30 tables; a restore loads only into an empty one"):
        pg.Postgres(SPEC, runner).load(str(tmp_path))
    answers = iter([(0, "tables=0\n", ""), (0, "", ""), (0, FACTS, "")])
    runner = Runner({"sh": lambda argv: next(answers)})
    facts = pg.Postgres(SPEC, runner).load(str(tmp_path))
    assert facts["counts"]["runs"] == 3
    restore = runner.calls[1][0]
    assert f"{tmp_path}:/work:ro" in restore
    assert "--single-transaction" in restore[-1] and "--exit-on-error" in restore[-1] and "--no-owner" in restore[-1]


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        ("postgresql+psycopg://u@h:5432/db?sslmode=require", "postgresql://u@h:5432/db?sslmode=require"),
        ("postgres://u@h/db", "postgresql://u@h/db"),
    ],
)
def test_libpq_uri(uri, expected):
    assert pg.libpq_uri(uri) == expected
