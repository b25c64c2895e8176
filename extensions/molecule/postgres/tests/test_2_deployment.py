"""The PostgreSQL and S3 deployment the move made: a second run and a check run change nothing,
MLflow is the only published port, the secrets stay in root-only files, MLflow connects as the
database's owner role, which is no superuser (a cluster of the previous release, whose superuser
owned everything, is moved over), the data lives in the store directory, new artifacts land in the
bucket, and an image without the drivers is refused."""

import base64
import json
import time
import uuid

import yaml
from conftest import STORE, assert_run_intact, bucket_keys, log_run, psql, run_playbook, sh

SECRETS = (
    "postgres_password",
    "postgres_owner_password",
    "pgpass",
    "s3_access_key_id",
    "s3_secret_access_key",
    "s3.json",
    "aws_credentials",
)
OWNER = "mlflow_owner"
# psql as the owner role, the way the modules reach the database: a one-off container on the
# project network with the role's pgpass file.
AS_OWNER = (
    f"docker run --rm -i --network mlflow_default -v {STORE}/secrets/pgpass:/run/pgpass:ro -e PGPASSFILE=/run/pgpass"
    f" mlops/postgres:17 psql -X -At -v ON_ERROR_STOP=1 postgresql://{OWNER}@mlflow-postgres:5432/mlflow"
)
NOT_OWNED = (
    f"SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relowner <> '{OWNER}'::regrole"
)


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
    owner_password = host.file(f"{STORE}/secrets/postgres_owner_password").content_string.strip()
    secret_key = host.file(f"{STORE}/secrets/s3_secret_access_key").content_string.strip()
    values = [password, owner_password, secret_key]
    assert len(password) == 40 and len(owner_password) == 40 and len(secret_key) == 40
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
    assert f"postgresql://{OWNER}@mlflow-postgres:5432/mlflow" in command
    assert host.file(f"{STORE}/secrets/pgpass").content_string == f"*:*:*:{OWNER}:{owner_password}\n"


def mlflow_sessions(host, mlflow):
    """The roles of MLflow's sessions, as the superuser sees them, and whether each is a superuser."""
    mlflow.search_experiments()
    address = sh(host, "docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' mlflow-server")
    rows = psql(
        host,
        "SELECT DISTINCT a.usename, r.rolsuper FROM pg_stat_activity a JOIN pg_roles r ON r.rolname = a.usename"
        f" WHERE a.datname = 'mlflow' AND a.client_addr = '{address.strip()}'",
    )
    return sorted(tuple(row) for row in rows)


def test_mlflow_connects_as_the_owner_role_which_cannot_run_programs(host, mlflow):
    """A crafted dump or an SQL injection runs as MLflow's role: COPY ... TO PROGRAM is refused to it."""
    assert mlflow_sessions(host, mlflow) == [(OWNER, "f")]
    assert psql(host, NOT_OWNED) == [["0"]]
    assert psql(host, "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'mlflow'") == [[OWNER]]
    witness = f"/tmp/copy-to-program-{uuid.uuid4().hex}"
    attack = f"COPY (SELECT 1) TO PROGRAM 'touch {witness}'"
    # Positive control: the same statement as the superuser runs the program.
    psql(host, attack)
    ran = sh(host, f"docker exec mlflow-postgres sh -c 'test -e {witness} && rm {witness} && echo ran'")
    assert ran.strip() == "ran"
    refused = host.run(f"echo {json.dumps(attack)} | {AS_OWNER}")
    assert refused.rc != 0 and "pg_execute_server_program" in refused.stderr, refused.stderr
    assert host.run(f"docker exec mlflow-postgres test -e {witness}").rc == 1


def as_the_previous_release(host):
    """What releases before 0.5.0 ran: MLflow and the modules connected as the superuser mlflow,
    which owned the database and every table; there was no owner role."""
    sh(host, "docker stop mlflow-server")
    psql(host, f"REASSIGN OWNED BY {OWNER} TO mlflow; DROP OWNED BY {OWNER}; DROP ROLE {OWNER}")
    sh(host, f"cd {STORE}/secrets && printf '*:*:*:mlflow:%s\\n' \"$(cat postgres_password)\" > pgpass")
    compose = f"{STORE}/docker-compose.yml"
    project = yaml.safe_load(host.file(compose).content_string)
    service = project["services"]["mlflow-server"]
    service["command"] = [part.replace(f"{OWNER}@", "mlflow@") for part in service["command"]]
    encoded = base64.b64encode(yaml.safe_dump(project).encode()).decode()
    sh(host, f"echo {encoded} | base64 -d > {compose}")
    sh(host, f"docker compose --project-directory {STORE} up -d --wait mlflow-server")


def test_a_cluster_of_the_previous_release_is_given_to_the_owner_role(host, mlflow, ledger, tmp_path):
    as_the_previous_release(host)
    # Before: MLflow as the superuser, which owns every table.
    assert mlflow_sessions(host, mlflow) == [("mlflow", "t")]
    assert int(psql(host, NOT_OWNED.replace(f"'{OWNER}'::regrole", "'mlflow'::regrole"))[0][0]) == 0
    result = run_playbook(host, "site.yml")
    assert result.rc == 0, result.failures
    task = f"its owner role, which is no superuser, {OWNER}"
    # It runs where the upgrade check reads the database and again before MLflow starts: the first moves.
    given = [item["changed"] for name, item in result.results() if name.endswith(task)]
    assert given == [True, False], given
    # After: every table, the database and its schema belong to the owner role, MLflow connects as it.
    assert psql(host, NOT_OWNED) == [["0"]]
    assert int(psql(host, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")[0][0]) > 20
    assert psql(host, "SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = 'public'") == [[OWNER]]
    assert mlflow_sessions(host, mlflow) == [(OWNER, "f")]
    for run_id, expected in ledger.items():
        assert_run_intact(mlflow, run_id, expected, tmp_path)
    again = run_playbook(host, "site.yml")
    assert again.rc == 0 and again.changed == 0, [name for name, item in again.results() if item.get("changed")]
    # The next tests read the containers' health: MLflow was recreated here.
    deadline = time.monotonic() + 180
    while sh(host, "docker inspect -f '{{.State.Health.Status}}' mlflow-server").strip() != "healthy":
        assert time.monotonic() < deadline, "MLflow did not answer healthy again"
        time.sleep(2)


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
