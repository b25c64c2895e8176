"""A changed setting of MLflow's auth app takes effect on the next run. MLflow reads
basic_auth.ini only when it starts, and the Compose file does not change with it, so the role
restarts MLflow for it ("Restart MLflow to read its changed settings")."""

from conftest import SECOND_ADMIN_PASSWORD, Tunnel, mlflow_as, run_playbook

# The server; the PC is reached through docker exec.
testinfra_hosts = ["mlflow-auth"]

ROTATED = {"mlflow_server_auth_admin_password": SECOND_ADMIN_PASSWORD}


def ben_reads(run_id):
    with Tunnel("ben"):
        return mlflow_as("ben", "read", run_id)["status"]


def test_a_changed_default_permission_takes_effect_and_changes_back(host, ledger):
    run_id = ledger["ann_run"]["run_id"]
    # Control: ben reads ann's run under the default permission READ.
    assert ben_reads(run_id) == 200

    closed = run_playbook(host, "site.yml", {**ROTATED, "mlflow_server_auth_default_permission": "NO_PERMISSIONS"})
    assert closed.rc == 0, closed.failures
    assert closed.ran("Restart MLflow to read its changed settings")
    assert ben_reads(run_id) == 403

    opened = run_playbook(host, "site.yml", ROTATED)
    assert opened.rc == 0, opened.failures
    assert opened.ran("Restart MLflow to read its changed settings")
    assert ben_reads(run_id) == 200
