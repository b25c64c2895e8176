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


def test_restore_brings_back_a_deleted_user_and_the_permissions(host, ledger):
    status, body = api(
        host, "/api/2.0/mlflow/users/delete", ADMIN, SECOND_ADMIN_PASSWORD, "DELETE", {"username": "ben"}
    )
    assert status == 200, body
    with Tunnel("ben"):
        assert mlflow_as("ben", "read", ledger["ann_run"]["run_id"])["status"] == 401
    result = run_playbook(host, "restore.yml", {**NEW_ADMIN, "mlflow_server_restore_from": ledger["backup"]})
    assert result.rc == 0, result.failures
    with Tunnel("ben"):
        assert mlflow_as("ben", "read", ledger["ann_run"]["run_id"])["status"] == 200
        assert mlflow_as("ben", "write", ledger["ann_run"]["run_id"])["status"] == 403
