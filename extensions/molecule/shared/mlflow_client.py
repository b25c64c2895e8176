"""The real mlflow client as the scenarios' tests use it: pointed at a target through a relay
(mlflow_relay.py), a run logged the way a member logs one and checked back, and a writer that
logs in a loop while something happens to the server.

Import it from a scenario's conftest.py, after mlflow_relay's sys.path line:
    from mlflow_client import Writer, assert_run_intact, log_run, pointed_at, relay, wait_for
(`relay` is a pytest fixture: importing it into conftest.py makes it the scenario's.)"""

import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from mlflow_relay import Relay


def wait_for(condition, timeout, interval=0.5):
    """True as soon as condition() is, or condition()'s last answer after timeout seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()


@pytest.fixture(scope="module")
def relay(host):
    """A relay from a controller port to MLflow on this target's loopback, for the module's tests."""
    relay = Relay(host.backend.get_hostname())
    yield relay
    relay.close()


def pointed_at(monkeypatch, uri, timeout=30):
    """The real mlflow client, pointed at uri, with a few retries and a request timeout."""
    import mlflow

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", str(timeout))
    mlflow.set_tracking_uri(uri)
    return mlflow


def log_run(mlflow, directory, experiment):
    """A run with a param, five loss steps and an artifact of random bytes; what it must still hold."""
    artifact = Path(directory) / f"notes-{uuid.uuid4().hex}.txt"
    artifact.write_bytes(os.urandom(2048) + f"{experiment}\n".encode())
    mlflow.set_experiment(experiment)
    with mlflow.start_run() as run:
        mlflow.log_param("learning_rate", "0.01")
        for step in range(5):
            mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
        mlflow.log_artifact(str(artifact))
    return {"run_id": run.info.run_id, "artifact": artifact.name, "bytes": artifact.read_bytes()}


def assert_run_intact(mlflow, run, directory, in_order=False):
    """The run that log_run logged, read back through MLflow: its param, its steps and its artifact's
    bytes. in_order: the history also comes back in the order the steps were logged."""
    client = mlflow.MlflowClient()
    assert client.get_run(run["run_id"]).data.params == {"learning_rate": "0.01"}
    history = client.get_metric_history(run["run_id"], "loss")
    assert sorted((m.step, m.value) for m in history) == [(s, 1.0 / (s + 1)) for s in range(5)]
    if in_order:
        assert [m.value for m in history] == [1.0 / (s + 1) for s in range(5)]
    fetched = mlflow.artifacts.download_artifacts(
        run_id=run["run_id"], artifact_path=run["artifact"], dst_path=str(Path(directory) / uuid.uuid4().hex)
    )
    assert Path(fetched).read_bytes() == run["bytes"]


@dataclass
class Writer:
    """A client that logs in a loop, one request at a time, and records what the
    server acknowledged and every error it saw. runs: a new run per iteration;
    otherwise one run, whose steps 0, 1, 2... are acknowledged in order (acked_steps)."""

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
