"""Helpers for the lifecycle tests: the real mlflow client through a relay, the
users' playbooks run with ansible-playbook, and readers of the target's files.

The test files run in name order (test_1_... to test_6_...) on one target, each
starting from the state the previous one left: MLflow 2.22.1 after converge,
3.17.2 from test_1 on."""

import json
import os
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))
from mlflow_relay import Relay

# The test files import these from here.
from playbook import PROJECT, readme_env, run_playbook  # noqa: F401  # pylint: disable=unused-import

STORE = "/opt/mlflow"
BACKUPS = "/var/backups/mlflow"
OLD_VERSION = "2.22.1"
NEW_VERSION = "3.17.2"
BROKEN_IMAGE = "mlops/mlflow:3.17.2-broken-upgrade"
# What the runs before the upgrade ask for: the inventory's 2.22.1, loaded already.
OLD = {"mlflow_server_image": f"mlops/mlflow:{OLD_VERSION}", "mlflow_server_allowed_hosts": []}
# What every run after the upgrade asks for (the inventory still says 2.22.1).
NEW = {
    "mlflow_server_image": f"mlops/mlflow:{NEW_VERSION}",
    "mlflow_server_image_archive": "",
    "mlflow_server_allowed_hosts": ["localhost:*", "127.0.0.1:*"],
}


# --- the target -------------------------------------------------------------


def sh(host, command):
    return host.check_output(command)


def server_version(host):
    return sh(
        host,
        "python3 -c \"import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:500/version').read().decode())\"",
    ).strip()


def container(host):
    return json.loads(sh(host, "docker inspect mlflow-server"))[0]


def sqlite(host, db, query):
    """One value from a read-only query, with the target's own Python."""
    script = f"import sqlite3; print(sqlite3.connect('file:{db}?mode=ro', uri=True).execute({query!r}).fetchone()[0])"
    return sh(host, f"python3 -c {json.dumps(script)}").strip()


def sqlite_all(host, db, query):
    script = (
        "import json, sqlite3; "
        f"print(json.dumps(sqlite3.connect('file:{db}?mode=ro', uri=True).execute({query!r}).fetchall()))"
    )
    return json.loads(sh(host, f"python3 -c {json.dumps(script)}"))


def backups(host, label=None):
    """Backup folders, oldest first (names start with a UTC timestamp)."""
    names = sh(host, f"ls -1 {BACKUPS} 2>/dev/null || true").split()
    return [
        f"{BACKUPS}/{name}" for name in sorted(names) if name[:8].isdigit() and (label is None or name.endswith(label))
    ]


def manifest(host, backup):
    return json.loads(host.file(f"{backup}/manifest.json").content_string)


def sha256_tree(host, root):
    """{relative path: sha256} of every file under root."""
    out = sh(host, f"cd {root} && find . -type f -print0 | sort -z | xargs -0 -r sha256sum")
    return {line[66:].removeprefix("./"): line[:64] for line in out.splitlines()}


def fingerprint(host):
    """What bad input must not change: the store's files, the backups, the container."""
    return {
        "store": sha256_tree(host, STORE),
        "backups": sh(host, f"ls -1 {BACKUPS} 2>/dev/null || true"),
        "container": sh(host, "docker inspect -f '{{.Id}} {{.Config.Image}} {{.State.StartedAt}}' mlflow-server"),
    }


def wait_for(condition, timeout, interval=0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()


# --- the real mlflow client -------------------------------------------------


@pytest.fixture(scope="module")
def relay(host):
    relay = Relay(host.backend.get_hostname())
    yield relay
    relay.close()


@pytest.fixture
def mlflow(relay, monkeypatch):
    import mlflow

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    mlflow.set_tracking_uri(relay.uri)
    return mlflow


@pytest.fixture(scope="session")
def ledger():
    """Every run logged so far that must survive everything that follows."""
    return []


def log_run(mlflow, directory, experiment):
    artifact = Path(directory) / f"notes-{uuid.uuid4().hex}.txt"
    artifact.write_bytes(os.urandom(2048) + f"{experiment}\n".encode())
    mlflow.set_experiment(experiment)
    with mlflow.start_run() as run:
        mlflow.log_param("learning_rate", "0.01")
        for step in range(5):
            mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
        mlflow.log_artifact(str(artifact))
    return {"run_id": run.info.run_id, "artifact": artifact.name, "bytes": artifact.read_bytes()}


def assert_run_intact(mlflow, run, directory):
    client = mlflow.MlflowClient()
    assert client.get_run(run["run_id"]).data.params == {"learning_rate": "0.01"}
    history = client.get_metric_history(run["run_id"], "loss")
    assert sorted((m.step, m.value) for m in history) == [(s, 1.0 / (s + 1)) for s in range(5)]
    fetched = mlflow.artifacts.download_artifacts(
        run_id=run["run_id"], artifact_path=run["artifact"], dst_path=str(Path(directory) / uuid.uuid4().hex)
    )
    assert Path(fetched).read_bytes() == run["bytes"]


@dataclass
class Writer:
    """A client that logs in a loop, one request at a time, and records what the
    server acknowledged and every error it saw. runs: a new run per iteration."""

    mlflow: object
    experiment: str
    runs: bool = False
    acked_runs: list = field(default_factory=list)
    acked_steps: list = field(default_factory=list)
    errors: list = field(default_factory=list)

    def __post_init__(self):
        self.stop = threading.Event()
        self.client = self.mlflow.MlflowClient()
        self.experiment_id = self.mlflow.set_experiment(self.experiment).experiment_id
        self.run_id = self.client.create_run(self.experiment_id).info.run_id
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self):
        step = 0
        while not self.stop.is_set():
            try:
                if self.runs:
                    run_id = self.client.create_run(self.experiment_id).info.run_id
                    self.acked_runs.append(run_id)
                    self.client.log_metric(run_id, "acked", 1.0, step=0)
                    self.acked_steps.append((run_id, 0))
                else:
                    self.client.log_metric(self.run_id, "under_load", float(step), step=step)
                    self.acked_steps.append((self.run_id, step))
                    step += 1
            except Exception as error:  # every failure counts, whatever its type
                self.errors.append(f"{type(error).__name__}: {str(error)[:200]}")
                time.sleep(0.2)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=120)
