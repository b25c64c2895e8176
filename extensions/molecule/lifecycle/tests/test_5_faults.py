"""Faults in the middle of logging: the server comes back by itself and every
write the client saw acknowledged is still there."""

import pytest
from conftest import Writer, container, wait_for

FAULTS = {
    "kill -9 of the server process": "kill -9 {pid}",
    "systemctl restart docker": "systemctl restart docker",
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_server_comes_back_by_itself_with_every_acknowledged_write(host, mlflow, monkeypatch, fault):
    # Fail fast while the server is away; the writer keeps trying.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    experiment = "fault-" + fault.split()[0].replace("-", "")
    with Writer(mlflow, experiment, runs=True) as writer:
        assert wait_for(lambda: len(writer.acked_runs) >= 10, 60), writer.errors
        started = container(host)["State"]["StartedAt"]
        host.check_output(FAULTS[fault].format(pid=container(host)["State"]["Pid"]))
        acked_at_fault = len(writer.acked_runs)
        # Nothing but the restart policy brings it back.
        came_back = wait_for(lambda: len(writer.acked_runs) >= acked_at_fault + 10, 240)
    assert came_back, writer.errors[-5:]
    assert wait_for(lambda: container(host)["State"]["Running"], 60)
    assert container(host)["State"]["StartedAt"] != started, "the server was not restarted"
    assert writer.errors, "the fault did not interrupt the client"

    client = mlflow.MlflowClient()
    found = {run.info.run_id for run in client.search_runs([writer.experiment_id], max_results=5000)}
    missing_runs = set(writer.acked_runs) - found
    assert not missing_runs
    missing_metrics = [
        (run_id, step)
        for run_id, step in writer.acked_steps
        if step not in {m.step for m in client.get_metric_history(run_id, "acked")}
    ]
    assert not missing_metrics
