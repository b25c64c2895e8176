"""The move off SQLite (playbooks/migrate.yml): a refused row leaves MLflow on SQLite and says
what failed; the real move copies every row and artifact, compares them and switches over."""

import json

from conftest import (
    LOGS,
    STORE,
    assert_run_intact,
    backups,
    bucket_keys,
    log_run,
    manifest,
    psql,
    run_playbook,
    sh,
)


def serves_sqlite(host):
    command = json.loads(sh(host, "docker inspect mlflow-server"))[0]["Config"]["Cmd"]
    return "sqlite:////mlflow/db/mlflow.db" in command


def test_the_sqlite_server_holds_runs_metrics_params_tags_and_artifacts(host, mlflow, ledger, tmp_path):
    assert serves_sqlite(host)
    for index in range(6):
        run_id, expected = log_run(mlflow, tmp_path, f"team-{index % 3}", index)
        ledger[run_id] = expected
    client = mlflow.MlflowClient()
    deleted = client.create_run(mlflow.set_experiment("team-0").experiment_id).info.run_id
    client.delete_run(deleted)
    files = sh(host, f"find {STORE}/mlruns -type f | wc -l").strip()
    assert int(files) == 12


def test_a_row_postgresql_refuses_stops_the_move_and_mlflow_stays_on_sqlite(host, mlflow, ledger, tmp_path):
    """SQLite does not enforce VARCHAR lengths; PostgreSQL does. A tag key of 300 characters
    (written past MLflow's API, as old clients could) makes the copy fail."""
    run_id = next(iter(ledger))
    long_key = "k" * 300
    script = (
        "import sqlite3; c = sqlite3.connect('/opt/mlflow/db/mlflow.db'); "
        f"c.execute(\"INSERT INTO tags (key, value, run_uuid) VALUES ('{long_key}', 'v', '{run_id}')\"); c.commit()"
    )
    sh(host, f"python3 -c {json.dumps(script)}")
    result = run_playbook(host, "migrate.yml")
    assert result.rc != 0
    [failure] = [msg for msg in result.failures if msg.startswith("The move of")] or [result.failures]
    assert "value too long for type character varying(250)" in failure
    assert "MLflow stays on SQLite, and serves it again; its files were only read." in failure
    assert serves_sqlite(host)
    [aside] = sh(host, f"ls -d {STORE}/migration-failed-*").split()
    assert host.file(f"{aside}/postgres/PG_VERSION").exists
    assert not host.file(f"{STORE}/postgres").exists
    delete = (
        "import sqlite3; c = sqlite3.connect('/opt/mlflow/db/mlflow.db'); "
        f"c.execute(\"DELETE FROM tags WHERE key = '{long_key}'\"); c.commit()"
    )
    sh(host, f"python3 -c {json.dumps(delete)}")
    for run_id, expected in ledger.items():
        assert_run_intact(mlflow, run_id, expected, tmp_path)


def test_the_move_copies_every_row_and_artifact_compares_them_and_switches_over(host, mlflow, ledger, tmp_path):
    result = run_playbook(host, "migrate.yml")
    assert result.rc == 0, result.failures
    assert not serves_sqlite(host)
    report = json.loads(
        next(
            item["container"]["Output"].strip().splitlines()[-1]
            for name, item in result.results()
            if name.endswith("Copy every row into PostgreSQL and compare both sides")
        )
    )
    artifacts = next(
        item["artifacts"]
        for name, item in result.results()
        if name.endswith("Copy every artifact into the bucket and compare each object's sha256")
    )
    assert report["ok"] and report["problems"] == []
    tables = report["tables"]
    for name in ("experiments", "runs", "metrics", "params", "tags"):
        assert tables[name]["source_rows"] == tables[name]["target_rows"] > 0
        assert tables[name]["source_sha256"] == tables[name]["target_sha256"]
    assert tables["runs"]["target_rows"] == 7 and tables["metrics"]["target_rows"] == 6 * 50
    assert artifacts["source"] == artifacts["target"] == 12
    assert artifacts["source_sha256"] == artifacts["target_sha256"]
    LOGS.mkdir(parents=True, exist_ok=True)
    (LOGS / "postgres-migration.json").write_text(json.dumps({"tables": tables, "artifacts": artifacts}, indent=1))

    [backup] = backups(host, "pre-migration")[-1:]
    assert manifest(host, backup)["counts"]["runs"] == 7
    assert int(psql(host, "SELECT count(*) FROM runs")[0][0]) == 7
    assert len(bucket_keys(host)) == 12
    # One copy of the data in the store: the SQLite files are aside, the backup has them too.
    assert not host.file(f"{STORE}/db").exists and not host.file(f"{STORE}/mlruns").exists
    assert host.file(sh(host, f"ls -d {STORE}/kept-before-migration-*").strip() + "/db/mlflow.db").exists
    for run_id, expected in ledger.items():
        assert_run_intact(mlflow, run_id, expected, tmp_path)
