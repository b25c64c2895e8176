# -*- coding: utf-8 -*-
# Copyright (c) mlops.mlflow developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""mlflow_postgres_owner run the way Ansible runs it, with psql faked at the command line.

The statements themselves run against a real PostgreSQL in the postgres Molecule scenario
(test_2_deployment: a cluster of the previous release is given to the owner role, in the
upgrade check and again before MLflow starts)."""

from __future__ import annotations

import pytest
from ansible.module_utils.basic import AnsibleModule
from ansible_collections.mlops.mlflow.tests.unit.plugins.modules.store_modules import run

PASSWORD = "s3cret'with\\odd"


@pytest.fixture
def psql(monkeypatch):
    calls = []
    answer = {"rc": 0, "stderr": ""}

    def run_command(self, argv, data=None, binary_data=False, **kwargs):
        calls.append((argv, data))
        return answer["rc"], "", answer["stderr"]

    monkeypatch.setattr(AnsibleModule, "run_command", run_command)
    return calls, answer


URI = "postgresql://mlflow_owner@mlflow-postgres:5432/mlflow"


def spec(pgpass_file, uri=URI):
    return {"image": "postgres:17", "network": "mlflow_default", "uri": uri, "pgpass_file": str(pgpass_file)}


@pytest.fixture
def password_file(tmp_path):
    # The role's pgpass line for the owner: ':' and '\\' escaped as libpq reads them.
    path = tmp_path / "pgpass"
    path.write_text("*:*:*:someone_else:nope\n*:*:*:mlflow_owner:" + PASSWORD.replace("\\", "\\\\") + "\n")
    return spec(path)


def test_the_password_goes_on_standard_input_quoted_and_never_on_the_command_line(psql, password_file, capsys):
    from ansible_collections.mlops.mlflow.plugins.modules import mlflow_postgres_owner

    calls, _answer = psql
    code, result = run(mlflow_postgres_owner, capsys, postgres=password_file)
    assert code == 0 and not result["changed"] and result["moved"] == []
    ((argv, stdin),) = calls
    assert argv == ["docker", "exec", "-i", "-u", "postgres", "mlflow-postgres",
                    "psql", "-X", "-q", "-U", "mlflow", "-d", "mlflow", "-f", "-"]  # fmt: skip
    assert PASSWORD not in " ".join(argv)
    assert stdin.startswith("\\set owner_password 's3cret''with\\\\odd'\n")
    assert "ALTER ROLE mlflow_owner PASSWORD :'owner_password';" in stdin
    assert "BEGIN;" not in stdin and "ROLLBACK;" not in stdin


def test_what_moved_is_a_change_and_check_mode_rolls_it_back(psql, password_file, capsys):
    from ansible_collections.mlops.mlflow.plugins.modules import mlflow_postgres_owner

    calls, answer = psql
    answer["stderr"] = (
        "psql:<stdin>:40: NOTICE:  changed: made the role mlflow_owner\n"
        "psql:<stdin>:40: NOTICE:  changed: gave 12 objects to mlflow_owner\n"
    )
    code, result = run(mlflow_postgres_owner, capsys, _ansible_check_mode=True, postgres=password_file)
    assert code == 0 and result["changed"]
    assert result["moved"] == ["made the role mlflow_owner", "gave 12 objects to mlflow_owner"]
    stdin = calls[-1][1]
    assert stdin.index("BEGIN;") < stdin.index("DO $$") < stdin.index("ROLLBACK;")


def test_a_failure_names_the_container_and_masks_the_password(psql, password_file, capsys):
    from ansible_collections.mlops.mlflow.plugins.modules import mlflow_postgres_owner

    _calls, answer = psql
    answer["rc"], answer["stderr"] = 3, f"ERROR:  syntax error\nLINE 1: ALTER ROLE mlflow_owner PASSWORD '{PASSWORD}'"
    code, result = run(mlflow_postgres_owner, capsys, postgres=password_file)
    assert code == 1 and PASSWORD not in result["msg"] and "********" in result["msg"]
    assert result["msg"].startswith("Giving the database mlflow to the role mlflow_owner failed in mlflow-postgres")


@pytest.mark.parametrize(
    ("uri", "content", "says"),
    [
        ("postgresql://Robert%27);DROP@mlflow-postgres/mlflow", "*:*:*:*:x", "is no plain PostgreSQL role name"),
        ("postgresql://mlflow-postgres/mlflow", "*:*:*:*:x", "must name the user, the container and the database"),
        (URI, "*:*:*:someone_else:x\n", "has no password for mlflow_owner"),
        (URI, "*:*:*:mlflow_owner:\n", "has no password for mlflow_owner"),
    ],
)
def test_bad_inputs_are_refused_before_psql_runs(psql, tmp_path, capsys, uri, content, says):
    from ansible_collections.mlops.mlflow.plugins.modules import mlflow_postgres_owner

    calls, _answer = psql
    path = tmp_path / "pgpass"
    path.write_text(content)
    code, result = run(mlflow_postgres_owner, capsys, postgres=spec(path, uri))
    assert code == 1 and says in result["msg"] and calls == []


def test_a_missing_password_file_says_which(psql, tmp_path, capsys):
    from ansible_collections.mlops.mlflow.plugins.modules import mlflow_postgres_owner

    code, result = run(mlflow_postgres_owner, capsys, postgres=spec(tmp_path / "none"))
    says = f"postgres.pgpass_file: cannot read the owner's password from {tmp_path}/none"
    assert code == 1 and result["msg"].startswith(says)


def test_a_password_with_a_line_break_never_reaches_psql():
    from ansible_collections.mlops.mlflow.plugins.module_utils.mlflow_postgres import PostgresError, owner_script

    with pytest.raises(PostgresError, match="holds a line break"):
        owner_script("mlflow_owner", "two\nlines")
