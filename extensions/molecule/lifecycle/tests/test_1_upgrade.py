"""Upgrade MLflow 2.22.1 (converge) to 3.17.2 with the server role: backup first,
explicit migration, nothing lost."""

from conftest import (
    NEW,
    NEW_VERSION,
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
    sha256_tree,
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
    result = run_playbook(host, "site.yml", NEW, check=True)
    assert result.rc == 0, result.failures
    planned = [m for m in result.messages if m.startswith("Check mode, nothing done. Would upgrade MLflow")]
    assert len(planned) == 1 and "from mlops/mlflow:2.22.1 to mlops/mlflow:3.17.2" in planned[0], result.messages
    assert fingerprint(host) == before
    assert backups(host) == []
    assert server_version(host) == OLD_VERSION


def test_upgrade_to_3_17_keeps_every_run_metric_and_artifact(host, mlflow, ledger, tmp_path):
    result = run_playbook(host, "site.yml", NEW)
    assert result.rc == 0, result.failures
    assert server_version(host) == NEW_VERSION
    assert container(host)["Config"]["Image"] == f"mlops/mlflow:{NEW_VERSION}"
    for run in ledger:
        assert_run_intact(mlflow, run, tmp_path)


def test_pre_upgrade_backup_was_taken_before_the_migration_and_is_sound(host, ledger):
    [backup] = backups(host, "pre-upgrade")
    found = manifest(host, backup)
    assert found["mlflow_version"] == OLD_VERSION
    assert found["counts"]["runs"] == len(ledger)
    assert found["counts"]["artifacts"] == len(ledger)
    assert sqlite(host, f"{backup}/mlflow.db", "PRAGMA integrity_check") == "ok"
    # The backup holds 2.22.1's schema, the live database 3.17.2's: it predates the migration.
    old_revision = sqlite(host, f"{backup}/mlflow.db", "SELECT version_num FROM alembic_version")
    live_revision = sqlite(host, f"{STORE}/mlflow.db", "SELECT version_num FROM alembic_version")
    assert old_revision == found["schema_revision"]
    assert old_revision != live_revision
    on_disk = sha256_tree(host, backup)
    assert {path: entry["sha256"] for path, entry in found["files"].items()} == {
        path: digest for path, digest in on_disk.items() if path != "manifest.json"
    }
