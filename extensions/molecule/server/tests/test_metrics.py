"""The metrics timer, read by a real node_exporter (Debian's prometheus-node-exporter, installed
in the target as an admin would): MLflow's health goes to 0 within two timer periods after the
container stops, and back to 1 when it runs again. Role logic: debian13 only, whose inventory
sets a 10 s period."""

import pytest
from mlflow_client import wait_for
from node_exporter import install, series

PERIOD = 10


@pytest.fixture(scope="module")
def node_exporter(host):
    if host.backend.get_hostname() != "debian13":
        pytest.skip("role logic, the same on every platform: run on debian13")
    return install(host)


def test_node_exporter_serves_the_role_s_series(node_exporter):
    host = node_exporter
    assert wait_for(lambda: series(host).get("mlflow_health_up") == 1, 3 * PERIOD), series(host)
    found = series(host)
    assert found['mlflow_health_reason{reason="ok"}'] == 1
    assert found['mlflow_info{version="3.17.2"}'] == 1
    assert found["mlflow_store_db_bytes"] > 0
    assert 0 < found["mlflow_store_filesystem_avail_bytes"] <= found["mlflow_store_filesystem_size_bytes"]
    assert found.get("node_textfile_scrape_error") == 0
    prom = host.file("/var/lib/prometheus/node-exporter/mlflow.prom")
    assert prom.user == "root" and prom.mode == 0o644


def test_health_goes_to_0_within_two_periods_when_mlflow_stops_and_back_to_1(node_exporter):
    host = node_exporter
    assert wait_for(lambda: series(host).get("mlflow_health_up") == 1, 3 * PERIOD), series(host)
    host.check_output("docker stop mlflow-server")
    try:
        # Two periods, and a little for the check itself and the scrape.
        assert wait_for(lambda: series(host).get("mlflow_health_up") == 0, 2 * PERIOD + 5), series(host)
        assert series(host)['mlflow_health_reason{reason="connection refused"}'] == 1
    finally:
        host.check_output("docker start mlflow-server")
    # MLflow takes a while to start; then the next check sees it.
    assert wait_for(lambda: series(host).get("mlflow_health_up") == 1, 180), series(host)
    assert series(host)['mlflow_health_reason{reason="ok"}'] == 1
