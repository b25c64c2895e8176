"""MLflow's own /metrics with authentication on (mlflow_server_metrics: true): MLflow lets only its
admin read it, so the metrics timer reads it as the admin from the role's root-only record and
re-exports the series; a real Prometheus scrapes them from the target's node_exporter with no MLflow
credential at all. No secret shows in the unit, systemd's view of it, its log or the textfile."""

from conftest import ADMIN, SECOND_ADMIN_PASSWORD, UPGRADED, api, run_playbook
from mlflow_client import wait_for
from node_exporter import Prometheus, install, run_metrics, series

testinfra_hosts = ["mlflow-auth"]

PERIOD = 10
METRICS = {**UPGRADED, "mlflow_server_metrics": True, "mlflow_server_metrics_interval": PERIOD}
ANN_PASSWORD = "ann-Vault-secret-5"


def test_only_the_mlflow_admin_may_read_metrics(host):
    result = run_playbook(host, "site.yml", METRICS)
    assert result.rc == 0, result.failures
    again = run_playbook(host, "site.yml", METRICS)
    assert again.rc == 0 and again.changed == 0, again.failures
    assert api(host, "/metrics")[0] == 401
    assert api(host, "/metrics", "ann", ANN_PASSWORD)[0] == 403
    # The control: the endpoint serves, to the admin.
    status, text = api(host, "/metrics", ADMIN, SECOND_ADMIN_PASSWORD)
    assert status == 200 and "mlflow_http_request_total" in text, text


def test_the_timer_re_exports_them_and_prometheus_scrapes_without_a_login(host):
    install(host)
    for _request in range(3):
        assert api(host, "/api/2.0/mlflow/experiments/search?max_results=1", "ann", ANN_PASSWORD)[0] == 200

    def requests():
        found = series(host)
        return found.get("mlflow_server_metrics_up") == 1 and any(
            name.startswith("mlflow_http_request_total{") for name in found
        )

    assert wait_for(requests, 3 * PERIOD), series(host)
    with Prometheus(host) as prometheus:
        found = prometheus.wait("mlflow_http_request_total", bool)
        assert {item["metric"]["status"] for item in found} >= {"200"}
        assert prometheus.wait("mlflow_server_metrics_up", bool)[0]["value"] == 1

    unit = host.file("/etc/systemd/system/mlflow-metrics.service")
    journal = host.check_output("journalctl -u mlflow-metrics.service --no-pager -o cat")
    textfile = host.file("/var/lib/prometheus/node-exporter/mlflow.prom").content_string
    for seen in (unit.content_string, host.check_output("systemctl show mlflow-metrics.service"), journal, textfile):
        assert SECOND_ADMIN_PASSWORD not in seen


def test_control_without_the_admin_record_the_timer_gets_nothing(host):
    """The same timer with the admin's record unreadable to it: /metrics answers 401, and the file
    says so (mlflow_server_metrics_up 0) instead of old numbers."""
    record = "/opt/mlflow/secrets/admin_password"
    host.check_output(f"mv {record} {record}.away")
    try:
        run_metrics(host)
        found = series(host)
        assert found["mlflow_server_metrics_up"] == 0, found
        assert not any(name.startswith("mlflow_http_request_total{") for name in found)
    finally:
        host.check_output(f"mv {record}.away {record}")
    run_metrics(host)
    assert series(host)["mlflow_server_metrics_up"] == 1
