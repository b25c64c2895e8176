"""The PostgreSQL and S3 deployment the move made: a second run and a check run change nothing,
MLflow is the only published port, the secrets stay in root-only files, the data lives in the
store directory, new artifacts land in the bucket, and an image without the drivers is refused."""

import json

from conftest import STORE, bucket_keys, log_run, run_playbook, sh

SECRETS = ("postgres_password", "pgpass", "s3_access_key_id", "s3_secret_access_key", "s3.json", "aws_credentials")


def test_a_second_run_changes_nothing_and_a_check_run_plans_nothing(host):
    again = run_playbook(host, "site.yml")
    assert again.rc == 0, again.failures
    assert again.changed == 0, [name for name, item in again.results() if item.get("changed")]
    check = run_playbook(host, "site.yml", check=True)
    assert check.rc == 0, check.failures
    assert check.changed == 0, [name for name, item in check.results() if item.get("changed")]


def test_only_mlflow_is_published_and_only_on_loopback(host):
    listening = sh(host, "ss -Hltn").split("\n")
    ports = {line.split()[3] for line in listening if line.strip()}
    assert "127.0.0.1:500" in ports
    assert not [p for p in ports if p.rsplit(":", 1)[1] in ("5432", "8333", "18333")], ports
    for container in ("mlflow-postgres", "mlflow-s3"):
        assert sh(host, f"docker port {container}").strip() == ""


def test_secrets_are_root_only_and_never_in_compose_inspect_or_ps(host):
    assert host.file(f"{STORE}/secrets").mode == 0o700
    values = []
    for name in SECRETS:
        secret = host.file(f"{STORE}/secrets/{name}")
        assert secret.mode == 0o600 and secret.user == "root", name
    password = host.file(f"{STORE}/secrets/postgres_password").content_string.strip()
    secret_key = host.file(f"{STORE}/secrets/s3_secret_access_key").content_string.strip()
    values = [password, secret_key]
    assert len(password) == 40 and len(secret_key) == 40
    exposed = {
        "docker-compose.yml": host.file(f"{STORE}/docker-compose.yml").content_string,
        "docker inspect": sh(host, "docker inspect mlflow-server mlflow-postgres mlflow-s3"),
        "ps": sh(host, "ps auxww"),
        "environment": sh(host, "docker exec mlflow-server env"),
    }
    for where, text in exposed.items():
        assert not [value for value in values if value in text], where
    # MLflow reaches PostgreSQL with a URI that has no password, and a pgpass file.
    command = json.loads(exposed["docker inspect"])[0]["Config"]["Cmd"]
    assert "postgresql://mlflow@mlflow-postgres:5432/mlflow" in command


def test_the_services_keep_their_data_in_the_store(host):
    assert host.file(f"{STORE}/postgres/PG_VERSION").content_string.strip() == "17"
    mounts = {
        name: {m["Destination"]: m["Source"] for m in json.loads(sh(host, f"docker inspect {name}"))[0]["Mounts"]}
        for name in ("mlflow-postgres", "mlflow-s3")
    }
    assert mounts["mlflow-postgres"]["/var/lib/postgresql/data"] == f"{STORE}/postgres"
    assert mounts["mlflow-s3"]["/data"] == f"{STORE}/s3"
    health = sh(host, "docker inspect -f '{{.Name}} {{.State.Health.Status}}' mlflow-postgres mlflow-s3 mlflow-server")
    assert health.split() == ["/mlflow-postgres", "healthy", "/mlflow-s3", "healthy", "/mlflow-server", "healthy"]


def test_a_new_artifact_goes_through_mlflow_into_the_bucket(host, mlflow, ledger, tmp_path):
    before = set(bucket_keys(host))
    run_id, expected = log_run(mlflow, tmp_path, "after-the-move", 7)
    ledger[run_id] = expected
    added = set(bucket_keys(host)) - before
    experiment = mlflow.get_experiment_by_name("after-the-move").experiment_id
    assert added == {f"{experiment}/{run_id}/artifacts/model.bin", f"{experiment}/{run_id}/artifacts/eval/report-7.txt"}
    assert not host.file(f"{STORE}/mlruns").exists


def test_an_image_without_the_drivers_is_refused_before_any_change(host):
    sh(
        host,
        "printf 'FROM mlops/mlflow:3.17.2-full\\nRUN pip uninstall -q -y psycopg psycopg-binary psycopg2-binary\\n'"
        " | docker build -q -t mlops/mlflow:3.17.2-nodrivers - >/dev/null",
    )
    started = sh(host, "docker inspect -f '{{.State.StartedAt}}' mlflow-server")
    result = run_playbook(host, "site.yml", {"mlflow_server_image": "mlops/mlflow:3.17.2-nodrivers"})
    assert result.rc != 0
    assert any(
        msg.startswith("mlflow_server_backend: postgresql needs psycopg in the MLflow image, and mlflow_server_image")
        for msg in result.failures
    ), result.failures
    assert sh(host, "docker inspect -f '{{.State.StartedAt}}' mlflow-server") == started
