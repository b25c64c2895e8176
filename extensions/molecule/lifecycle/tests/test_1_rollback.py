"""A failed upgrade rolls back by itself: MLflow 2.22.1's data offered to an image whose
`mlflow db upgrade` exits 1 (the data, not the container, says an upgrade is due)."""

import os
from pathlib import Path

from conftest import (
    BROKEN_IMAGE,
    OLD,
    OLD_VERSION,
    STORE,
    assert_run_intact,
    backups,
    container,
    fingerprint,
    log_run,
    manifest,
    run_playbook,
    server_version,
    sqlite,
)


def test_mlflow_2_22_takes_runs_metrics_and_artifacts(host, mlflow, ledger, tmp_path):
    assert server_version(host) == OLD_VERSION
    for index in range(4):
        ledger.append(log_run(mlflow, tmp_path, f"before-upgrade-{index % 2}"))
    for run in ledger:
        assert_run_intact(mlflow, run, tmp_path)


def test_check_mode_reports_the_planned_upgrade_and_changes_nothing(host):
    before = fingerprint(host)
    result = run_playbook(host, "site.yml", {**OLD, "mlflow_server_image": BROKEN_IMAGE}, check=True)
    assert result.rc == 0, result.failures
    planned = [
        m for m in result.messages if m.startswith("Check mode, nothing done. Would upgrade the data in /opt/mlflow")
    ]
    assert len(planned) == 1, result.messages
    assert f"to {BROKEN_IMAGE} (MLflow 3.17.2)" in planned[0]
    assert f"roll back to mlops/mlflow:{OLD_VERSION}" in planned[0]
    assert fingerprint(host) == before
    assert backups(host) == []
    assert server_version(host) == OLD_VERSION


def test_failed_upgrade_rolls_back_to_the_old_image_and_loses_no_run(host, mlflow, ledger, tmp_path):
    result = run_playbook(host, "site.yml", {**OLD, "mlflow_server_image": BROKEN_IMAGE})

    # The failed step (rescued), the rollback's first line, then the final failure.
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
    [backup] = backups(host)
    assert backup.endswith("-pre-upgrade")
    rescued, started, failure = rollback_log
    assert "'mlflow db upgrade' fails on purpose" in rescued
    assert started.startswith(f"ROLLBACK: the upgrade to {BROKEN_IMAGE} failed")
    assert "failed and was rolled back" in failure
    assert "'Migrate the tracking schema with the new image' failed" in failure
    assert f"MLflow mlops/mlflow:{OLD_VERSION} serves again with the data of the pre-upgrade backup {backup}" in failure

    assert server_version(host) == OLD_VERSION
    assert container(host)["Config"]["Image"] == f"mlops/mlflow:{OLD_VERSION}"
    assert f'image: "mlops/mlflow:{OLD_VERSION}"' in host.file(f"{STORE}/docker-compose.yml").content_string
    for run in ledger:
        assert_run_intact(mlflow, run, tmp_path)
    found = manifest(host, backup)
    assert found["mlflow_version"] == OLD_VERSION
    for run in ledger:
        assert (
            sqlite(host, f"{backup}/mlflow.db", f"SELECT count(*) FROM runs WHERE run_uuid = '{run['run_id']}'") == "1"
        )
    # The half-migrated data is kept aside, not deleted.
    assert host.check_output(f"ls -d {STORE}/kept-before-restore-*")
    # A 2.22.1 backup for test_4's failed restore, outside the rotation.
    host.check_output(f"cp -a {backup} /root/backup-2.22.1")


def test_after_the_rollback_the_role_converges_without_change(host):
    result = run_playbook(host, "site.yml", OLD)
    assert result.rc == 0, result.failures
    assert result.changed == 0
