"""MLflow's own /metrics (mlflow_server_metrics: true), without authentication: its counters on a
tmpfs, read through loopback with the allowed hosts kept, re-exported by the metrics timer, and
scraped by a real Prometheus from the target's real node_exporter."""

from conftest import run_playbook, sh
from mlflow_client import wait_for
from node_exporter import Prometheus, install, series

PERIOD = 10
METRICS = {"mlflow_server_metrics": True, "mlflow_server_metrics_interval": PERIOD}
GET = (
    'docker exec mlflow-server python -c "import urllib.request, urllib.error\n'
    "try:\n"
    " print(urllib.request.urlopen(urllib.request.Request('http://127.0.0.1:5000/metrics',"
    " headers={{'Host': '{host}'}}), timeout=5).status)\n"
    "except urllib.error.HTTPError as error:\n"
    ' print(error.code)"'
)


def requests(host):
    return sum(value for name, value in series(host).items() if name.startswith("mlflow_http_request_total{"))


def test_mlflow_s_metrics_reach_prometheus_through_node_exporter(host, mlflow):
    result = run_playbook(host, "site.yml", METRICS)
    assert result.rc == 0, result.failures
    again = run_playbook(host, "site.yml", METRICS)
    assert again.rc == 0 and again.changed == 0, again.failures
    # On a tmpfs of the container, not in the store.
    mounts = sh(host, "docker inspect -f '{{json .Mounts}} {{json .HostConfig.Mounts}}' mlflow-server")
    assert '"Type":"tmpfs","Target":"/run/mlflow-metrics"' in mounts.replace(" ", ""), mounts
    assert "tmpfs /run/mlflow-metrics tmpfs" in sh(host, "docker exec mlflow-server cat /proc/mounts")

    install(host)
    for _request in range(3):
        mlflow.search_experiments(max_results=1)
    assert wait_for(lambda: requests(host) >= 3, 3 * PERIOD), series(host)
    assert series(host)["mlflow_server_metrics_up"] == 1
    with Prometheus(host) as prometheus:
        found = prometheus.wait("mlflow_http_request_total", lambda result: sum(r["value"] for r in result) >= 3)
        assert {item["metric"]["status"] for item in found} >= {"200"}
        prometheus.wait("mlflow_health_up == 1", bool)


def test_the_allowed_hosts_stay_on_metrics(host):
    # The collector's request (a tunnel client's Host) is let in; a rebinding name is not.
    assert sh(host, GET.format(host="localhost:5000")).strip() == "200"
    assert sh(host, GET.format(host="rebind.example:5000")).strip() == "403"


def test_a_restart_starts_the_counters_at_0(host, mlflow):
    for _request in range(5):
        mlflow.search_experiments(max_results=1)
    assert wait_for(lambda: requests(host) >= 8, 3 * PERIOD), series(host)
    sh(host, "docker restart mlflow-server")
    # The next checks after the restart count only what came since; the file of an earlier run
    # would have carried the 8 over.
    assert wait_for(lambda: series(host).get("mlflow_server_metrics_up") == 1 and requests(host) < 8, 180), series(host)
