"""Upgrade MLflow 2.22.1 to 3.17.2 after the container is gone: the data's schema says an
upgrade is due, so the role backs up first and migrates explicitly; nothing is lost."""

import json

from conftest import (
    NEW,
    NEW_VERSION,
    OLD,
    OLD_VERSION,
    STORE,
    assert_run_intact,
    backups,
    container,
    fingerprint,
    manifest,
    run_playbook,
    server_version,
    sha256_tree,
    sqlite,
)


def test_upgrade_after_the_container_was_removed_backs_up_and_migrates(host, mlflow, ledger, tmp_path):
    host.check_output("docker rm -f mlflow-server")
    before = set(backups(host))
    result = run_playbook(host, "site.yml", NEW)
    assert result.rc == 0, result.failures
    assert result.ran("Migrate the tracking schema with the new image")
    [backup] = sorted(set(backups(host)) - before)
    assert backup.endswith("-pre-upgrade")
    assert server_version(host) == NEW_VERSION
    assert container(host)["Config"]["Image"] == f"mlops/mlflow:{NEW_VERSION}"
    for run in ledger:
        assert_run_intact(mlflow, run, tmp_path)


def test_pre_upgrade_backup_was_taken_before_the_migration_and_is_sound(host, ledger):
    backup = backups(host, "pre-upgrade")[-1]
    found = manifest(host, backup)
    assert found["mlflow_version"] == OLD_VERSION
    assert found["counts"]["runs"] == len(ledger)
    assert found["counts"]["artifacts"] == len(ledger)
    assert sqlite(host, f"{backup}/mlflow.db", "PRAGMA integrity_check") == "ok"
    # The backup holds 2.22.1's schema, the live database 3.17.2's: it predates the migration.
    old_revision = sqlite(host, f"{backup}/mlflow.db", "SELECT version_num FROM alembic_version")
    live_revision = sqlite(host, f"{STORE}/db/mlflow.db", "SELECT version_num FROM alembic_version")
    assert old_revision == found["schema_revision"]
    assert old_revision != live_revision
    on_disk = sha256_tree(host, backup)
    assert {path: entry["sha256"] for path, entry in found["files"].items()} == {
        path: digest for path, digest in on_disk.items() if path != "manifest.json"
    }


def test_the_image_schema_is_read_once_per_image(host):
    """A warm run reads what the role learned about the image; it starts no container for it."""
    image_id = host.check_output(f"docker image inspect -f '{{{{.Id}}}}' mlops/mlflow:{NEW_VERSION}").strip()
    kept = f"/var/cache/mlops-mlflow/{image_id[7:]}.v3.json"
    answer = json.loads(host.file(kept).content_string)
    # Control: with nothing kept for the image, a run asks it, and keeps the same answer, root's alone.
    host.check_output(f"rm {kept}")
    asked = run_playbook(host, "site.yml", NEW)
    assert asked.rc == 0 and asked.ran("Ask the image what it knows and has"), asked.failures
    assert json.loads(host.file(kept).content_string) == answer and answer["version"] == NEW_VERSION
    assert (host.file(kept).mode, host.file(kept).user) == (0o600, "root")

    result = run_playbook(host, "site.yml", NEW)
    assert result.rc == 0 and result.changed == 0, result.failures
    assert not result.ran("Ask the image what it knows and has")


def test_data_newer_than_the_image_is_refused_before_any_change(host):
    before = fingerprint(host)
    result = run_playbook(host, "site.yml", OLD)
    assert result.rc != 0
    [failure] = result.failures
    assert f"mlflow_server_image mlops/mlflow:{OLD_VERSION} runs MLflow {OLD_VERSION}, which does not know" in failure
    assert f"a newer MLflow wrote it, mlops/mlflow:{NEW_VERSION} per docker-compose.yml" in failure
    assert result.changed == 0
    assert fingerprint(host) == before
    assert server_version(host) == NEW_VERSION
