"""Housekeeping: with mlflow_server_gc_schedule set, a systemd timer runs `mlflow gc`, which
removes runs deleted long enough ago and their artifacts, and leaves live runs alone."""

from conftest import NEW, STORE, assert_run_intact, log_run, run_playbook, sqlite, wait_for

GC = {"mlflow_server_gc_schedule": "*:*:0/10", "mlflow_server_gc_older_than": "1s"}


def unit(host, name, prop):
    return host.check_output(f"systemctl show {name} -p {prop} --value").strip()


def test_the_gc_timer_purges_deleted_runs_and_their_artifacts_only(host, mlflow, ledger, tmp_path):
    client = mlflow.MlflowClient()
    kept = log_run(mlflow, tmp_path, "gc-kept")
    doomed = log_run(mlflow, tmp_path, "gc-doomed")
    experiment_id = client.get_run(doomed["run_id"]).info.experiment_id
    artifacts = f"{STORE}/mlruns/{experiment_id}/{doomed['run_id']}"
    assert host.file(f"{artifacts}/artifacts/{doomed['artifact']}").exists
    client.delete_run(doomed["run_id"])

    result = run_playbook(host, "site.yml", {**NEW, **GC})
    assert result.rc == 0, result.failures
    assert unit(host, "mlflow-gc.timer", "ActiveState") == "active"
    # systemd itself fires it: LastTriggerUSec is set only by the timer.
    assert wait_for(lambda: unit(host, "mlflow-gc.timer", "LastTriggerUSec") not in ("", "0", "n/a"), 60)
    assert wait_for(
        lambda: (
            sqlite(host, f"{STORE}/db/mlflow.db", f"SELECT count(*) FROM runs WHERE run_uuid = '{doomed['run_id']}'")
            == "0"
        ),
        90,
    )
    assert unit(host, "mlflow-gc.service", "Result") == "success"
    # gc deletes the run's artifacts through the server; MLflow leaves the emptied folders.
    assert host.check_output(f"find {artifacts} -type f") == ""
    assert_run_intact(mlflow, kept, tmp_path)
    for run in ledger:
        assert_run_intact(mlflow, run, tmp_path)


def test_an_empty_schedule_removes_the_timer(host):
    result = run_playbook(host, "site.yml", NEW)
    assert result.rc == 0, result.failures
    assert not host.file("/etc/systemd/system/mlflow-gc.timer").exists
    assert not host.file("/etc/systemd/system/mlflow-gc.service").exists
    assert "mlflow-gc" not in host.check_output("systemctl list-timers --all")
    again = run_playbook(host, "site.yml", NEW)
    assert again.rc == 0 and again.changed == 0
