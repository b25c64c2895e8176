"""A member who leaves (state: absent) loses their MLflow user, credentials file, key and account."""

import os
from pathlib import Path

from conftest import ADMIN, SECOND_ADMIN_PASSWORD, Tunnel, api, mlflow_as, on_pc, run_playbook

# The server; the PC is reached through docker exec.
testinfra_hosts = ["mlflow-auth"]


def test_removing_ben_deletes_his_mlflow_user_credentials_and_account(host):
    key = (Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "keys" / "ben.pub").read_text().strip()
    ben = {
        "name": "ben",
        "pc": "mlflow-auth-pc",
        "local_user": "ben",
        "public_key": key,
        "host_alias": "mlflowauth",
        "local_port": 5002,
        "state": "absent",
    }
    result = run_playbook(
        host,
        "onboard.yml",
        {"mlflow_team": [ben], "mlflow_server_auth_admin_password": SECOND_ADMIN_PASSWORD},
        limit=False,
    )
    assert result.rc == 0, result.stdout[-3000:]
    assert "ben: REMOVED" in result.stdout
    # The inventory still names two settings as before 0.5.0: both read, and both named.
    assert "[DEPRECATED] mlflow_onboard_manage_accounts, mlflow_onboard_server_address:" in result.stdout
    status = api(host, "/api/2.0/mlflow/users/get?username=ben", ADMIN, SECOND_ADMIN_PASSWORD)[0]
    assert status == 404
    assert on_pc("ben", "test -e ~/.mlflow/credentials", check=False).returncode != 0
    assert "mlflowauth" not in on_pc("ben", "cat ~/.ssh/config 2>/dev/null || true").stdout
    assert not host.user("ben").exists
    with Tunnel("ann"):
        assert mlflow_as("ann", "log", "ann-first", "ann")["status"] == 200
