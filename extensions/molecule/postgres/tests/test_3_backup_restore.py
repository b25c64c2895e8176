"""Backups of PostgreSQL and S3 while a client writes, and a restore into freshly started services."""

import time

from conftest import STORE, Writer, assert_run_intact, backups, bucket_keys, manifest, psql, run_playbook, sh


def test_a_backup_under_load_is_one_snapshot_whose_counts_are_the_dump_s(host, mlflow, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    before = set(backups(host))
    with Writer(mlflow, "under-backup") as writer:
        while len(writer.acked_steps) < 10 and not writer.errors:
            time.sleep(0.2)
        acked_before = len(writer.acked_steps)
        result = run_playbook(host, "backup.yml")
        acked_after = len(writer.acked_steps)
    assert result.rc == 0, result.failures
    assert writer.errors == []
    assert acked_after > acked_before, "the client wrote nothing while the backup ran"
    [backup] = sorted(set(backups(host)) - before)
    found = manifest(host, backup)
    assert found["backend"] == "postgresql" and found["artifacts_store"] == "s3"
    assert found["counts"]["artifacts"] == len(bucket_keys(host))
    # The dump, restored into a scratch database, holds exactly the manifest's counts, and the
    # writer's steps 0..k-1 without a gap: one snapshot, not a torn copy.
    sh(host, f"docker cp {backup}/mlflow.pgdump mlflow-postgres:/tmp/check.pgdump")
    restore = "createdb -U mlflow scratch && pg_restore -U mlflow -d scratch /tmp/check.pgdump"
    sh(host, f"docker exec mlflow-postgres sh -c '{restore}'")
    try:
        for table in ("runs", "metrics", "params", "tags", "experiments"):
            assert int(psql(host, f"SELECT count(*) FROM {table}", "scratch")[0][0]) == found["counts"][table], table
        steps = [
            int(row[0]) for row in psql(host, f"SELECT step FROM metrics WHERE run_uuid = '{writer.run_id}'", "scratch")
        ]
        assert sorted(steps) == list(range(len(steps)))
        assert acked_before <= len(steps) <= acked_after + 1
    finally:
        sh(host, "docker exec mlflow-postgres sh -c 'dropdb -U mlflow scratch; rm -f /tmp/check.pgdump'")


def test_a_restore_brings_the_backup_back_into_fresh_services_and_keeps_what_it_replaced(
    host, mlflow, ledger, tmp_path
):
    backup = backups(host, "manual")[-1]
    counts = manifest(host, backup)["counts"]
    later = mlflow.MlflowClient().create_run(mlflow.set_experiment("after-the-backup").experiment_id).info.run_id
    result = run_playbook(host, "restore.yml", {"mlflow_server_restore_from": backup})
    assert result.rc == 0, result.failures
    assert int(psql(host, "SELECT count(*) FROM runs")[0][0]) == counts["runs"]
    assert psql(host, f"SELECT count(*) FROM runs WHERE run_uuid = '{later}'") == [["0"]]
    assert len(bucket_keys(host)) == counts["artifacts"]
    [kept] = sh(host, f"ls -d {STORE}/kept-before-restore-*").split()
    assert sorted(sh(host, f"ls {kept}").split()) == ["postgres", "s3"]
    for run_id, expected in ledger.items():
        assert_run_intact(mlflow, run_id, expected, tmp_path)
