"""A failed upgrade on PostgreSQL and S3 rolls back through the same seam as on SQLite: MLflow stops,
pg_dump takes the pre-upgrade backup, the new image's `mlflow db upgrade` fails, and the rollback
restores that backup into freshly started services and starts the old image again.

The new image is MLflow 3.17.2-full whose `mlflow db upgrade` exits 1 (images/mlflow-broken,
built on the target). The role learns per image id which schema revisions an image knows; the
test edits that record for the broken image to claim a newer head, so the role takes the upgrade
path without a second MLflow version to load."""

import json

from conftest import PROJECT, STORE, assert_run_intact, backups, bucket_keys, manifest, psql, run_playbook, sh

BROKEN = "mlops/mlflow:3.17.2-full-broken-upgrade"
CACHE = "/var/cache/mlops-mlflow"


def test_a_failed_upgrade_rolls_back_to_the_old_image_and_the_pre_upgrade_dump(host, mlflow, ledger, tmp_path):
    host.check_output("mkdir -p /var/tmp/mlflow-broken")
    for name in ("Dockerfile", "mlflow-wrapper.sh"):
        text = (PROJECT / "images" / "mlflow-broken" / name).read_text()
        host.check_output(f"cat > /var/tmp/mlflow-broken/{name} <<'EOF'\n{text}EOF")
    sh(host, f"docker build -q --build-arg BASE=mlops/mlflow:3.17.2-full -t {BROKEN} /var/tmp/mlflow-broken >/dev/null")
    image_id = sh(host, f"docker image inspect -f '{{{{.Id}}}}' {BROKEN}").strip()[7:]
    good_id = sh(host, "docker image inspect -f '{{.Id}}' mlops/mlflow:3.17.2-full").strip()[7:]
    facts = json.loads(host.file(f"{CACHE}/{good_id}.v3.json").content_string)
    facts["tracking"]["known"].append("ffffffffffff")
    facts["tracking"]["head"] = "ffffffffffff"
    host.check_output(f"cat > {CACHE}/{image_id}.v3.json <<'EOF'\n{json.dumps(facts)}\nEOF")

    revision = psql(host, "SELECT version_num FROM alembic_version")
    runs = int(psql(host, "SELECT count(*) FROM runs")[0][0])
    objects = sorted(bucket_keys(host))
    result = run_playbook(host, "site.yml", {"mlflow_server_image": BROKEN})
    assert result.rc != 0
    [failure] = [msg for msg in result.failures if msg.startswith("The upgrade of")]
    assert "failed and was rolled back" in failure
    assert "MLflow mlops/mlflow:3.17.2-full serves again with the data of the pre-upgrade backup" in failure
    [backup] = backups(host, "pre-upgrade")[-1:]
    assert manifest(host, backup)["backend"] == "postgresql"
    assert manifest(host, backup)["counts"]["runs"] == runs
    config = json.loads(sh(host, "docker inspect mlflow-server"))[0]["Config"]
    assert config["Image"] == "mlops/mlflow:3.17.2-full"
    assert psql(host, "SELECT version_num FROM alembic_version") == revision
    assert int(psql(host, "SELECT count(*) FROM runs")[0][0]) == runs
    assert sorted(bucket_keys(host)) == objects
    assert sh(host, f"ls -d {STORE}/kept-before-restore-*").split()
    for run_id, expected in ledger.items():
        assert_run_intact(mlflow, run_id, expected, tmp_path)
