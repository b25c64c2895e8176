"""mlflow_server_state: absent takes MLflow away and the timers that would find it gone, keeps the
data (without mlflow_server_purge_data) and the loopback guard, and a second run changes nothing.
Runs last (file name order) on debian13: role logic, the same on every platform."""

import pytest
from playbook import run_playbook

STORE = "/opt/mlflow"
HOUSEKEEPING = {"mlflow_server_gc_schedule": "daily", "mlflow_server_trace_retention": "90d"}
GONE = [
    "/etc/systemd/system/mlflow-gc.timer",
    "/etc/systemd/system/mlflow-gc.service",
    "/etc/systemd/system/mlflow-metrics.timer",
    "/etc/systemd/system/mlflow-metrics.service",
    "/usr/local/lib/mlflow-metrics.py",
    "/usr/local/lib/mlflow-traces.py",
    "/var/lib/prometheus/node-exporter/mlflow.prom",
]


@pytest.fixture(scope="module")
def debian13(host):
    if host.backend.get_hostname() != "debian13":
        pytest.skip("role logic, the same on every platform: run on debian13")
    return host


def test_absent_removes_mlflow_and_its_timers_and_keeps_the_data(debian13):
    host = debian13
    present = run_playbook(host, "site.yml", HOUSEKEEPING)
    assert present.rc == 0, present.failures
    # The positive control: everything that must go is there.
    assert [path for path in GONE if not host.file(path).exists] == []

    result = run_playbook(host, "site.yml", {**HOUSEKEEPING, "mlflow_server_state": "absent"})
    assert result.rc == 0, result.failures
    assert [path for path in GONE if host.file(path).exists] == []
    timers = host.check_output("systemctl list-timers --all --no-legend")
    assert "mlflow-gc" not in timers and "mlflow-metrics" not in timers
    assert host.run("docker inspect mlflow-server").rc != 0
    assert host.file(f"{STORE}/db/mlflow.db").exists
    assert host.service("mlflow-loopback-guard.service").is_running

    again = run_playbook(host, "site.yml", {**HOUSEKEEPING, "mlflow_server_state": "absent"})
    assert again.rc == 0 and again.changed == 0, again.failures
