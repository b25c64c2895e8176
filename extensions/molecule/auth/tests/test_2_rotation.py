"""A changed mlflow_server_auth_admin_password is rotated through MLflow's API."""

from conftest import ADMIN, FIRST_ADMIN_PASSWORD, SECOND_ADMIN_PASSWORD, STORE, api, record, run_playbook

# The server; the PC is reached through docker exec.
testinfra_hosts = ["mlflow-auth"]

PATH = "/api/2.0/mlflow/experiments/search?max_results=1"


def test_rotation_takes_the_new_password_and_the_old_one_stops_working(host):
    result = run_playbook(host, "site.yml", {"mlflow_server_auth_admin_password": SECOND_ADMIN_PASSWORD})
    assert result.rc == 0, result.failures
    assert result.ran("Rotate the MLflow admin's password through MLflow's API")
    old = api(host, PATH, ADMIN, FIRST_ADMIN_PASSWORD)[0]
    new = api(host, PATH, ADMIN, SECOND_ADMIN_PASSWORD)[0]
    record("admin, old password after rotation", f"GET {PATH}", old)
    record("admin, new password after rotation", f"GET {PATH}", new)
    assert (old, new) == (401, 200)
    assert host.file(f"{STORE}/secrets/admin_password").mode == 0o600


def test_a_second_run_changes_nothing(host):
    result = run_playbook(host, "site.yml", {"mlflow_server_auth_admin_password": SECOND_ADMIN_PASSWORD})
    assert result.rc == 0 and result.changed == 0, result.failures
    assert not result.ran("Rotate the MLflow admin's password through MLflow's API")
