"""Backup and restore carry the users and their permissions."""

import json

from conftest import ADMIN, BACKUPS, SECOND_ADMIN_PASSWORD, Tunnel, api, mlflow_as, run_playbook

# The server; the PC is reached through docker exec.
testinfra_hosts = ["mlflow-auth"]

NEW_ADMIN = {"mlflow_server_auth_admin_password": SECOND_ADMIN_PASSWORD}


def test_backup_holds_the_auth_database_with_its_checksum(host, ledger):
    result = run_playbook(host, "backup.yml", NEW_ADMIN)
    assert result.rc == 0, result.failures
    backup = host.check_output(f"ls -1d {BACKUPS}/*-manual | tail -1")
    manifest = json.loads(host.file(f"{backup}/manifest.json").content_string)
    digest = host.check_output(f"sha256sum {backup}/basic_auth.db").split()[0]
    assert manifest["files"]["basic_auth.db"]["sha256"] == digest
    assert manifest["auth"]["counts"]["users"] == 3  # admin, ann, ben
    ledger["backup"] = backup


def test_restore_brings_back_the_users_and_permissions_of_the_backup(host, ledger):
    """After the backup the admin adds a user and lets ben write to ann's experiment; the restore
    takes both back, into the running MLflow. (Deleting a user who holds permissions fails on MLflow 2.22.1 itself.)"""
    admin = (ADMIN, SECOND_ADMIN_PASSWORD)
    status, body = api(
        host, "/api/2.0/mlflow/users/create", *admin, "POST", {"username": "eve", "password": "eve-password-123"}
    )
    assert status == 200, body
    grant = {"experiment_id": ledger["ann_run"]["experiment_id"], "username": "ben", "permission": "EDIT"}
    status, body = api(host, "/api/2.0/mlflow/experiments/permissions/create", *admin, "POST", grant)
    assert status == 200, body
    with Tunnel("ben"):
        assert mlflow_as("ben", "write", ledger["ann_run"]["run_id"])["status"] == 200
    started = host.check_output("docker inspect -f '{{.State.StartedAt}}' mlflow-server")
    result = run_playbook(host, "restore.yml", {**NEW_ADMIN, "mlflow_server_restore_from": ledger["backup"]})
    assert result.rc == 0, result.failures
    # Into the running MLflow: the auth app (no credential cache, the default) reads the restored
    # basic_auth.db at once, without a restart; the answers below are the proof.
    assert any("into the running MLflow, without a restart." in m for m in result.messages), result.messages
    assert host.check_output("docker inspect -f '{{.State.StartedAt}}' mlflow-server") == started
    assert api(host, "/api/2.0/mlflow/users/get?username=eve", *admin)[0] == 404
    with Tunnel("ben"):
        assert mlflow_as("ben", "read", ledger["ann_run"]["run_id"])["status"] == 200
        assert mlflow_as("ben", "write", ledger["ann_run"]["run_id"])["status"] == 403
