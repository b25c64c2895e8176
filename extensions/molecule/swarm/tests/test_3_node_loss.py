"""Losing the worker while clients log through both nodes: the manager's replica keeps serving
without an error, and every run a client was told is stored (acknowledged) is there afterwards.

Each writer loops: create a run, log_batch of 200 metrics, terminate; a run counts as
acknowledged once the terminate call returned. The worker is killed (SIGKILL to its whole
container, engine and all) while its writer is mid-loop."""

import json
import subprocess
import threading
import time
import uuid

from conftest import LOGS, MANAGER, WORKER, psql
from mlflow.entities import Metric


class Writer(threading.Thread):
    def __init__(self, client, experiment_id):
        super().__init__(daemon=True)
        self.client, self.experiment_id = client, experiment_id
        self.acked, self.errors = [], []
        self.halt = threading.Event()

    def run(self):
        while not self.halt.is_set():
            try:
                run_id = self.client.create_run(self.experiment_id).info.run_id
                now = int(time.time() * 1000)
                self.client.log_batch(run_id, metrics=[Metric("loss", 1.0 / (i + 1), now, i) for i in range(200)])
                self.client.set_terminated(run_id)
                self.acked.append((time.monotonic(), run_id))
            except Exception as error:  # every failure counts, whatever its type
                self.errors.append((time.monotonic(), f"{type(error).__name__}: {str(error)[:160]}"))
                time.sleep(0.5)


def answering(client, seconds=120):
    """Wait until a node's replica answers an authenticated call (a replica Swarm just restarted
    after a failed health check on a loaded host is back within its start period)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return client.search_experiments(max_results=1) is not None
        except Exception:  # not answering yet, whatever the client raises
            if time.monotonic() > deadline:
                raise
            time.sleep(2)


def test_losing_the_worker_mid_logging_loses_no_acknowledged_run(clients):
    assert all(answering(clients[node]) for node in (MANAGER, WORKER))
    experiment = clients[MANAGER].create_experiment(f"node-loss-{uuid.uuid4().hex[:8]}")
    writers = {node: Writer(clients[node], experiment) for node in (MANAGER, WORKER)}
    for writer in writers.values():
        writer.start()
    deadline = time.monotonic() + 120
    while min(len(w.acked) for w in writers.values()) < 5 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert min(len(w.acked) for w in writers.values()) >= 5, {n: w.errors[-3:] for n, w in writers.items()}
    assert not writers[MANAGER].errors and not writers[WORKER].errors

    # The kill comes right after a fresh acknowledgement through the worker: it is logging when it goes.
    fresh = len(writers[WORKER].acked)
    while len(writers[WORKER].acked) == fresh and time.monotonic() < deadline + 60:
        time.sleep(0.05)
    assert len(writers[WORKER].acked) > fresh, writers[WORKER].errors[-3:]
    stopped = time.monotonic()
    subprocess.run(["docker", "kill", WORKER], check=True, capture_output=True)
    acked_at_stop = len(writers[MANAGER].acked)
    time.sleep(20)
    for writer in writers.values():
        writer.halt.set()
        writer.join(timeout=60)

    manager, worker = writers[MANAGER], writers[WORKER]
    last_worker_ack = worker.acked[-1][0]
    # The worker's client failed only after the kill, and acknowledged nothing after its first failure.
    assert worker.errors and worker.errors[0][0] >= stopped
    assert last_worker_ack <= worker.errors[0][0]
    # The manager's replica kept serving, without one error.
    assert manager.errors == []
    assert len(manager.acked) >= acked_at_stop + 5

    acked = [run_id for writer in writers.values() for _time, run_id in writer.acked]
    rows = psql(
        "SELECT r.run_uuid, r.status, count(m.step) FROM runs r LEFT JOIN metrics m ON m.run_uuid = r.run_uuid "
        f"WHERE r.run_uuid IN ({', '.join(repr(run) for run in acked)}) GROUP BY r.run_uuid, r.status"
    )
    stored = {run: (status, int(metrics)) for run, status, metrics in rows}
    missing = [run for run in acked if stored.get(run) != ("FINISHED", 200)]
    result = {
        "acknowledged_via_manager": len(manager.acked),
        "acknowledged_via_worker": len(worker.acked),
        "acknowledged_via_manager_after_the_kill": len(manager.acked) - acked_at_stop,
        "manager_client_errors": len(manager.errors),
        "worker_client_errors_after_the_kill": len(worker.errors),
        "first_worker_error": worker.errors[0][1],
        "last_worker_ack_before_kill_s": round(stopped - last_worker_ack, 2),
        "acknowledged_runs_stored_finished_with_200_metrics": len(acked) - len(missing),
        "missing": missing,
    }
    LOGS.mkdir(parents=True, exist_ok=True)
    (LOGS / "swarm-node-loss.json").write_text(json.dumps(result, indent=1))
    assert missing == [], result
    # The lost node's replica stays pending: one per node, and one node is left.
    tasks = subprocess.run(
        [
            "docker",
            "exec",
            MANAGER,
            "docker",
            "service",
            "ps",
            "--format",
            "{{.Node}} {{.CurrentState}}",
            "mlflow_mlflow-server",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert any(line.startswith(MANAGER) and "Running" in line for line in tasks.splitlines()), tasks
