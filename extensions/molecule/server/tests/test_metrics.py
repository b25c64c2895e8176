"""The metrics timer, read by a real node_exporter (Debian's prometheus-node-exporter, installed
in the target as an admin would): MLflow's health goes to 0 within two timer periods after the
container stops, and back to 1 when it runs again. Role logic: debian13 only, whose inventory
sets a 10 s period."""

import re

import pytest
from mlflow_client import wait_for
from node_exporter import install, run_metrics, series
from playbook import run_playbook

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


def test_the_status_playbook_draws_health_history_backups_and_disk(node_exporter):
    """playbooks/status.yml after the stop above: the picture an admin reads, drawn from the
    metrics timer's files (printed, so a failure shows the whole picture)."""
    host = node_exporter
    result = run_playbook(host, "status.yml")
    assert result.rc == 0 and result.changed == 0, result.failures
    [lines] = [item["msg"] for name, item in result.results() if name.endswith("Show MLflow's status on debian13")]
    print("\n".join(lines))
    picture = {line[:10].strip(): line[10:] for line in lines if line[:10].strip()}
    assert picture["health"].startswith("up (ok, ") and picture["health"].endswith("MLflow 3.17.2"), lines
    # The stop above: at least one fall, and a mixed hour among the marks.
    assert int(re.search(r"down (\d+) times?", picture["last 24h"]).group(1)) >= 1, lines
    marks = next(line.strip() for line in lines if line.startswith(" " * 10))
    assert "▄" in marks.split()[0], lines
    assert re.match(r"database \d", picture["disk"]) and " free of " in picture["disk"], lines
    assert picture["backups"].endswith(("last attempt none", "last attempt ok")), lines


def test_an_image_without_the_exporter_is_refused_before_any_change(node_exporter):
    """mlflow_server_metrics on this scenario's plain image (no prometheus-flask-exporter): refused,
    and MLflow keeps running untouched. The control, a -full image that has it, deploys with the
    same setting in the postgres scenario (test_5_metrics.py)."""
    host = node_exporter
    running = "docker inspect -f '{{.Id}} {{.State.StartedAt}}' mlflow-server"
    before = host.check_output(running)
    result = run_playbook(host, "site.yml", {"mlflow_server_metrics": True})
    assert result.rc != 0 and result.changed == 0, result.failures
    refusal = "mlflow_server_metrics needs prometheus-flask-exporter in the MLflow image"
    assert any(refusal in message for message in result.failures), result.failures
    assert host.check_output(running) == before


def test_a_failed_backup_keeps_the_last_success_and_says_it_failed(node_exporter):
    """A good backup, then one that fails (a database in the store replaced by a link, which the
    backup refuses): the metrics keep the good one's time and report the failed attempt, the
    series the MLflowBackupFailed and MLflowNoRecentBackup alerts read."""
    host = node_exporter
    good = run_playbook(host, "backup.yml")
    assert good.rc == 0, good.failures
    run_metrics(host)
    before = series(host)
    assert before["mlflow_backup_last_run_success"] == 1
    planted = "/opt/mlflow/db/basic_auth.db"
    host.check_output(f"ln -s /etc/hostname {planted}")
    try:
        failed = run_playbook(host, "backup.yml")
    finally:
        host.check_output(f"rm -f {planted}")
    assert failed.rc != 0 and any("is a symbolic link" in message for message in failed.failures), failed.failures
    run_metrics(host)
    after = series(host)
    assert after["mlflow_backup_last_run_success"] == 0
    assert after["mlflow_backup_last_run_timestamp_seconds"] > before["mlflow_backup_last_run_timestamp_seconds"]
    success = "mlflow_backup_last_success_timestamp_seconds"
    assert after[success] == before[success]
