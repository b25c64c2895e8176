"""A restore into the running MLflow: a SQLite backup at the live data's schema, with nothing of
MLflow's (credential cache, AI Gateway tables, unfinished jobs) outliving it. MLflow keeps serving
through it. "No run lost": every run of the backup, and every write acknowledged after the restore,
is there; what came after the backup and before the restore is gone, as a restore means.

The fallback, MLflow stopped, is tested here for a run in flight; test_4_restore's cases take it for
a damaged live database, a deleted store, a backup to migrate and the switch turned off."""

from conftest import NEW, STORE, Writer, backups, container, run_playbook, sqlite, wait_for

STOP = "Stop the MLflow container, the managed PostgreSQL and S3"


def test_a_live_restore_keeps_mlflow_serving_and_every_write_after_it(host, mlflow, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    client = mlflow.MlflowClient()
    experiment = mlflow.set_experiment("live-restore").experiment_id
    in_backup = client.create_run(experiment).info.run_id
    client.set_terminated(in_backup)
    before = set(backups(host))
    assert run_playbook(host, "backup.yml", NEW).rc == 0
    [backup] = sorted(set(backups(host)) - before)
    started = container(host)["State"]["StartedAt"]

    with Writer(mlflow, "live-restore", runs=True) as writer:
        assert wait_for(lambda: len(writer.acked_runs) >= 10, 60), writer.errors
        acked_before = len(writer.acked_runs)
        result = run_playbook(
            host,
            "restore.yml",
            {
                **NEW,
                "mlflow_server_restore_from": backup.rsplit("/", 1)[1],
                "mlflow_server_restore_allow_running": True,
            },
        )
        acked_at_end = len(writer.acked_runs)
        assert wait_for(lambda: len(writer.acked_runs) >= acked_at_end + 10, 60), writer.errors[-5:]

    assert result.rc == 0, result.failures
    assert any("into the running MLflow, without a restart." in message for message in result.messages)
    assert not result.ran(STOP)
    assert container(host)["State"]["StartedAt"] == started
    found = {run.info.run_id for run in client.search_runs([experiment], max_results=5000)}
    assert in_backup in found
    assert set(writer.acked_runs[acked_at_end:]) <= found
    # Control: the restore did replace the data: runs acknowledged before it, after the backup, are gone.
    assert not set(writer.acked_runs[:acked_before]) & found
    # The writer saw only its own runs in flight end, never the server away.
    assert all("RESOURCE_DOES_NOT_EXIST" in error for error in writer.errors), writer.errors[:5]
    assert sqlite(host, f"{STORE}/db/mlflow.db", "PRAGMA integrity_check") == "ok"


def test_a_run_in_flight_the_backup_lacks_sends_the_restore_the_stopped_way_and_is_named(host, mlflow):
    """The fallback: without mlflow_server_restore_allow_running, a run in flight is a reason to stop MLflow."""
    backup = backups(host)[-1]
    client = mlflow.MlflowClient()
    in_flight = client.create_run(mlflow.set_experiment("live-restore").experiment_id).info.run_id
    started = container(host)["State"]["StartedAt"]
    result = run_playbook(host, "restore.yml", {**NEW, "mlflow_server_restore_from": backup.rsplit("/", 1)[1]})
    assert result.rc == 0, result.failures
    assert result.ran(STOP)
    assert container(host)["State"]["StartedAt"] != started
    reason = [m for m in result.messages if "with MLflow stopped:" in m]
    assert reason and "run(s) in flight are not in the backup" in reason[0] and in_flight in reason[0], result.messages
    assert sqlite(host, f"{STORE}/db/mlflow.db", "PRAGMA integrity_check") == "ok"
