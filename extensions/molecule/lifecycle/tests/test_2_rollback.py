"""A failed upgrade rolls back by itself: an image whose `mlflow db upgrade` exits 1."""

import os
from pathlib import Path

from conftest import (
    BROKEN_IMAGE,
    NEW,
    NEW_VERSION,
    STORE,
    assert_run_intact,
    backups,
    container,
    log_run,
    manifest,
    run_playbook,
    server_version,
    sqlite,
)


def test_failed_upgrade_rolls_back_to_the_old_image_and_loses_no_run(host, mlflow, ledger, tmp_path):
    ledger.append(log_run(mlflow, tmp_path, "before-broken-upgrade"))
    before = set(backups(host))

    result = run_playbook(host, "site.yml", {**NEW, "mlflow_server_image": BROKEN_IMAGE})

    # The failed step (rescued), the rollback's own lines, then the final failure.
    rollback_log = [
        str(outcome["msg"])
        for _task, outcome in result.results()
        if outcome.get("failed") or str(outcome.get("msg", "")).startswith("ROLLBACK")
    ]
    Path(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", str(tmp_path)), "rollback.log").write_text(
        "\n".join(rollback_log) + "\n"
    )
    print("\n".join(rollback_log))
    assert result.rc != 0
    [backup] = sorted(set(backups(host)) - before)
    assert backup.endswith("-pre-upgrade")
    rescued, started, done, failure = rollback_log
    assert "'mlflow db upgrade' fails on purpose" in rescued
    assert started.startswith("ROLLBACK: upgrade to mlops/mlflow:3.17.2-broken-upgrade failed")
    assert done == "ROLLBACK: done; MLflow mlops/mlflow:3.17.2 is healthy again."
    assert "failed and was rolled back" in failure
    assert "'Run mlflow db upgrade with mlops/mlflow:3.17.2-broken-upgrade' failed" in failure
    assert f"pre-upgrade backup {backup}" in failure

    assert server_version(host) == NEW_VERSION
    assert container(host)["Config"]["Image"] == f"mlops/mlflow:{NEW_VERSION}"
    assert f"image: mlops/mlflow:{NEW_VERSION}" in host.file(f"{STORE}/docker-compose.yml").content_string
    for run in ledger:
        assert_run_intact(mlflow, run, tmp_path)
    found = manifest(host, backup)
    assert found["mlflow_version"] == NEW_VERSION
    for run in ledger:
        assert (
            sqlite(host, f"{backup}/mlflow.db", f"SELECT count(*) FROM runs WHERE run_uuid = '{run['run_id']}'") == "1"
        )
    assert sqlite(host, f"{backup}/mlflow.db", "PRAGMA integrity_check") == "ok"


def test_after_the_rollback_the_role_converges_without_change(host):
    result = run_playbook(host, "site.yml", NEW)
    assert result.rc == 0, result.failures
    assert result.changed == 0
