"""Backups while a client writes: consistent, the writer sees no error, health stays ok."""

import json
import tarfile
import threading
import time

import requests
from conftest import (
    BACKUPS,
    NEW,
    STORE,
    Writer,
    backups,
    manifest,
    run_playbook,
    sha256_tree,
    sqlite,
    sqlite_all,
    wait_for,
)


class HealthWatch:
    """Asks /health every 0.3 s and records every answer that is not OK."""

    def __init__(self, uri):
        self.uri = uri
        self.answers = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self):
        session = requests.Session()
        while not self.stop.is_set():
            try:
                response = session.get(f"{self.uri}/health", timeout=10)
                self.answers.append(response.status_code == 200 and response.text.strip() == "OK")
            except requests.RequestException:
                self.answers.append(False)
            time.sleep(0.3)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=30)


def test_backup_under_load_is_consistent_and_the_writer_sees_no_error(host, mlflow, relay, monkeypatch):
    # No retries: every failed request is an error the user would see.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    before = set(backups(host))
    with HealthWatch(relay.uri) as health, Writer(mlflow, "under-backup") as writer:
        assert wait_for(lambda: len(writer.acked_steps) >= 20, 60), writer.errors
        acked_before = len(writer.acked_steps)
        result = run_playbook(host, "backup.yml", NEW)
        acked_after = len(writer.acked_steps)
        wait_for(lambda: len(writer.acked_steps) >= acked_after + 10, 30)
    assert result.rc == 0, result.failures
    assert writer.errors == []
    assert health.answers and all(health.answers)
    assert acked_after > acked_before, "the client wrote nothing while the backup ran"

    [backup] = sorted(set(backups(host)) - before)
    assert backup.endswith("-manual")
    found = manifest(host, backup)
    db = f"{backup}/mlflow.db"
    assert found["integrity_check"] == "ok"
    assert sqlite(host, db, "PRAGMA integrity_check") == "ok"
    assert {path: entry["sha256"] for path, entry in found["files"].items()} == {
        path: digest for path, digest in sha256_tree(host, backup).items() if path != "manifest.json"
    }
    assert int(sqlite(host, db, "SELECT count(*) FROM runs")) == found["counts"]["runs"]
    assert int(sqlite(host, db, "SELECT count(*) FROM metrics")) == found["counts"]["metrics"]
    # A snapshot, not a torn copy: the writer's steps 0..k-1 without a gap, k at
    # least what was acknowledged when the backup started.
    steps = [row[0] for row in sqlite_all(host, db, f"SELECT step FROM metrics WHERE run_uuid = '{writer.run_id}'")]
    assert sorted(steps) == list(range(len(steps)))
    assert acked_before <= len(steps) <= acked_after + 1


def test_backup_keeps_the_newest_and_fetches_privately_to_the_controller(host, tmp_path):
    before = backups(host)
    assert len(before) >= 3
    fetch_dir = tmp_path / "fetched"
    result = run_playbook(
        host, "backup.yml", {**NEW, "mlflow_server_backup_keep": 2, "mlflow_server_backup_fetch_dir": str(fetch_dir)}
    )
    assert result.rc == 0, result.failures
    after = backups(host)
    [new] = sorted(set(after) - set(before))
    assert after == [before[-1], new]
    name = new.rsplit("/", 1)[1]
    archive = fetch_dir / host.backend.get_hostname() / f"{name}.tar.gz"
    with tarfile.open(archive) as packed:
        [member] = [m for m in packed.getmembers() if m.name.endswith("manifest.json")]
        fetched = json.load(packed.extractfile(member))
    assert fetched == manifest(host, new)
    assert oct(archive.stat().st_mode & 0o777) == "0o600"
    assert oct(archive.parent.stat().st_mode & 0o777) == "0o700"
    assert oct(fetch_dir.stat().st_mode & 0o777) == "0o700"
    assert host.check_output("ls -d /tmp/mlflow-backup-* 2>/dev/null || true") == ""
    assert host.file(BACKUPS).mode == 0o700
    assert host.file(new).mode == 0o700


def test_backups_after_the_runs_vanished_never_rotate_out_the_last_good_copy(host, mlflow):
    """The bad day: the database is emptied (MLflow recreates its tables on start), then the
    routine backups go on. The last backup holding runs survives the rotation; the first one
    after the accident is marked and warned about."""
    last_good = backups(host)[-1]
    runs_before = manifest(host, last_good)["counts"]["runs_active"]
    assert runs_before > 0
    host.check_output(f"docker stop mlflow-server && : > {STORE}/db/mlflow.db && docker start mlflow-server")
    assert wait_for(
        lambda: host.run("docker inspect -f '{{.State.Health.Status}}' mlflow-server").stdout.strip() == "healthy", 180
    )
    warnings = []
    for _routine in range(3):
        result = run_playbook(host, "backup.yml", {**NEW, "mlflow_server_backup_keep": 1})
        assert result.rc == 0, result.failures
        warnings += result.warnings
    remaining = backups(host)
    assert last_good in remaining
    marked = [b for b in remaining if manifest(host, b).get("anomaly")]
    assert len(marked) == 1
    assert manifest(host, marked[0])["anomaly"] == (
        f"active runs fell from {runs_before} to 0 since the backup {last_good.rsplit('/', 1)[1]}"
    )
    assert remaining == sorted({last_good, marked[0], remaining[-1]})
    assert any("is marked: active runs fell from" in warning for warning in warnings), warnings
