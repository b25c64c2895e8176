"""Restore: a safety backup first, then exactly the backup's data, even into a wiped store."""

import pytest
from conftest import (
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
    sha256_tree,
    sqlite,
)


def live_counts(host):
    db = f"{STORE}/mlflow.db"
    return {
        table: int(sqlite(host, db, f"SELECT count(*) FROM {table}")) for table in ("experiments", "runs", "metrics")
    }


def assert_store_equals(host, backup):
    found = manifest(host, backup)
    counts = dict(found["counts"])
    assert int(counts.pop("artifacts")) == len(sha256_tree(host, f"{STORE}/mlruns"))
    assert live_counts(host) == counts
    artifacts = {path: entry["sha256"] for path, entry in found["files"].items() if path.startswith("mlruns/")}
    assert {f"mlruns/{path}": digest for path, digest in sha256_tree(host, f"{STORE}/mlruns").items()} == artifacts
    assert host.file(f"{STORE}/mlflow.db").mode == 0o666
    assert host.file(f"{STORE}/mlruns").mode == 0o777


def assert_run_gone(mlflow, run):
    with pytest.raises(mlflow.exceptions.MlflowException):
        mlflow.MlflowClient().get_run(run["run_id"])


def test_restore_saves_the_current_data_first_then_puts_the_backup_back(host, mlflow, ledger, tmp_path):
    backup = backups(host)[-1]
    late = log_run(mlflow, tmp_path, "after-the-backup")
    before = set(backups(host))
    result = run_playbook(host, "restore.yml", {**NEW, "mlflow_restore_from": backup.rsplit("/", 1)[1]})
    assert result.rc == 0, result.failures
    [safety] = sorted(set(backups(host)) - before)
    assert safety.endswith("-pre-restore")
    assert sqlite(host, f"{safety}/mlflow.db", f"SELECT count(*) FROM runs WHERE run_uuid = '{late['run_id']}'") == "1"
    assert server_version(host) == NEW_VERSION
    assert_store_equals(host, backup)
    assert_run_gone(mlflow, late)
    for run in ledger:
        assert_run_intact(mlflow, run, tmp_path)


def test_restore_into_a_wiped_store_gives_back_the_manifest(host, mlflow, ledger, tmp_path):
    backup = backups(host, "manual")[-1]
    host.check_output(f"docker rm -f mlflow-server && rm -rf {STORE}")
    result = run_playbook(host, "restore.yml", {**NEW, "mlflow_restore_from": backup})
    assert result.rc == 0, result.failures
    assert container(host)["State"]["Health"]["Status"] in ("starting", "healthy")
    assert server_version(host) == NEW_VERSION
    assert_store_equals(host, backup)
    for run in ledger:
        assert_run_intact(mlflow, run, tmp_path)
