# -*- coding: utf-8 -*-
# Copyright (c) mlops.mlflow developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The server role's metrics collector (roles/server/files/mlflow_metrics.py) against a real
`mlflow server`, its output read by the real promtool, and the alert rules it ships tested
with `promtool test rules` on recorded series (prometheus/mlflow.rules.test.yml).

promtool comes from Debian's prometheus package; scripts/test.sh unpacks it into the venv."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow
from conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
COLLECTOR = ROOT / "roles" / "server" / "files" / "mlflow_metrics.py"
RULES = ROOT / "roles" / "server" / "files" / "mlflow.rules.yml"
RULE_TESTS = Path(__file__).with_name("prometheus") / "mlflow.rules.test.yml"


def promtool():
    found = shutil.which("promtool", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]))
    assert found, "promtool is missing: scripts/test.sh unpacks it from Debian's prometheus package into .venv/bin"
    return found


def store(tmp_path, backup_ok=True):
    """A store with a database and two artifacts, and a backup folder with one finished backup
    (made 2026-12-01 00:00:00 UTC) and the record of a newer attempt."""
    (tmp_path / "store" / "db").mkdir(parents=True, exist_ok=True)
    (tmp_path / "store" / "db" / "mlflow.db").write_bytes(b"x" * 4096)
    (tmp_path / "store" / "mlruns" / "1").mkdir(parents=True, exist_ok=True)
    (tmp_path / "store" / "mlruns" / "1" / "a.bin").write_bytes(b"y" * 1000)
    (tmp_path / "store" / "mlruns" / "1" / "b.bin").write_bytes(b"z" * 24)
    backup = tmp_path / "backups" / "20261201T000000Z-manual"
    backup.mkdir(parents=True, exist_ok=True)
    (backup / "manifest.json").write_text(json.dumps({"created": "2026-12-01T00:00:00Z", "bytes": 5120}))
    # An unfinished one, newer: not a backup yet.
    (tmp_path / "backups" / ".20261202T000000Z-manual.partial").mkdir(exist_ok=True)
    error = None if backup_ok else "disk full"
    record = {"time": 1796256000, "ok": backup_ok, "name": None, "bytes": None, "error": error}
    (tmp_path / "backups" / "last_run.json").write_text(json.dumps(record))
    return tmp_path / "store", tmp_path / "backups"


def collect(tmp_path, port, backup_ok=True, extra=(), databases=None):
    """Run the collector as the timer does; the written file and its samples {series{labels}: value}.
    databases(folder), when given, lays out the store's database folder."""
    store_dir, backups = store(tmp_path, backup_ok)
    if databases:
        databases(store_dir / "db")
    out = tmp_path / "mlflow.prom"
    subprocess.run(
        [sys.executable, str(COLLECTOR), "--port", str(port), "--store", str(store_dir), "--backup-dir", str(backups),
         "--out", str(out), "--gc-unit", "mlflow-gc-not-here.service", *extra],
        check=True, timeout=60,
    )  # fmt: skip
    samples = {}
    for line in out.read_text().splitlines():
        if not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return out, samples


def test_a_healthy_server_and_the_store_read_as_node_exporter_metrics(mlflow_server, tmp_path):
    out, samples = collect(tmp_path, mlflow_server.port, backup_ok=False)
    assert samples["mlflow_health_up"] == 1
    assert samples['mlflow_health_reason{reason="ok"}'] == 1
    assert samples['mlflow_info{version="%s"}' % mlflow.__version__] == 1
    # The finished backup is the last success; the newer failed attempt is the last run.
    assert samples["mlflow_backup_last_success_timestamp_seconds"] == 1796083200
    assert samples["mlflow_backup_last_success_bytes"] == 5120
    assert samples["mlflow_backup_last_run_timestamp_seconds"] == 1796256000
    assert samples["mlflow_backup_last_run_success"] == 0
    assert samples["mlflow_store_db_bytes"] == 4096
    assert samples["mlflow_store_artifacts_bytes"] == 1024
    assert 0 < samples["mlflow_store_filesystem_avail_bytes"] <= samples["mlflow_store_filesystem_size_bytes"]
    # gc never ran here: its series are left out rather than made up.
    assert not any(name.startswith("mlflow_gc_") for name in samples)
    # node_exporter reads what promtool accepts.
    code, said = check_metrics(out)
    assert code == 0, said
    assert oct(out.stat().st_mode & 0o777) == "0o644"
    assert [path.name for path in tmp_path.iterdir() if path.name.endswith(".tmp")] == []


def test_a_port_where_nothing_answers_reads_as_down_with_the_reason(tmp_path):
    _out, samples = collect(tmp_path, free_port())
    assert samples["mlflow_health_up"] == 0
    assert samples['mlflow_health_reason{reason="connection refused"}'] == 1
    assert not any(name.startswith("mlflow_info") for name in samples)
    assert samples["mlflow_backup_last_run_success"] == 1


def check_metrics(out):
    """What promtool says of the file, as node_exporter's parser would take it."""
    checked = subprocess.run(
        [promtool(), "check", "metrics"], input=out.read_text(), capture_output=True, text=True, check=False
    )
    return checked.returncode, checked.stdout + checked.stderr


def test_mlflow_s_own_metrics_are_added_with_server_metrics(mlflow_server_metrics, tmp_path):
    """--server-metrics (mlflow_server_metrics): MLflow's request counters join the file, the
    collector's own families once each; and the control: the same run without it adds none."""
    url = mlflow_server_metrics.url + "/api/2.0/mlflow/experiments/search?max_results=1"
    for _request in range(3):
        with urllib.request.urlopen(url, timeout=10) as answer:
            assert answer.status == 200
    _control, control_samples = collect(tmp_path / "control", mlflow_server_metrics.port)
    assert not any(name.startswith(("mlflow_http_", "mlflow_server_metrics_up")) for name in control_samples)

    out, samples = collect(tmp_path / "with", mlflow_server_metrics.port, extra=["--server-metrics"])
    assert samples["mlflow_server_metrics_up"] == 1
    requests = {name: value for name, value in samples.items() if name.startswith("mlflow_http_request_total{")}
    assert requests.get('mlflow_http_request_total{method="GET",status="200"}', 0) >= 3, requests
    assert any(name.startswith("mlflow_http_request_duration_seconds_bucket{") for name in samples)
    text = out.read_text()
    # Only MLflow's mlflow_* families; every family named once (node_exporter refuses a repeat).
    families = re.findall(r"^# TYPE (\S+) ", text, re.MULTILINE)
    assert len(families) == len(set(families)), families
    assert all(family.startswith("mlflow_") for family in families), families
    assert families.count("mlflow_info") == 1
    code, said = check_metrics(out)
    assert code == 0, said


def test_server_metrics_on_a_server_without_them_reads_as_0(mlflow_server, tmp_path):
    """A server started without --expose-prometheus answers /metrics with 404: the collector says
    so, and the rest of the file is whole."""
    out, samples = collect(tmp_path, mlflow_server.port, extra=["--server-metrics"])
    assert samples["mlflow_server_metrics_up"] == 0
    assert samples["mlflow_health_up"] == 1
    assert not any(name.startswith("mlflow_http_") for name in samples)
    assert check_metrics(out)[0] == 0


def test_the_alert_rules_fire_as_their_tests_say(tmp_path):
    checked = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    command = [promtool(), "test", "rules", RULE_TESTS.name]
    tested = subprocess.run(command, cwd=RULE_TESTS.parent, capture_output=True, text=True, check=False)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_control_the_rule_tests_catch_a_wrong_threshold(tmp_path):
    """The same tests on rules whose backup alert waits 28 hours instead of 26: they must fail."""
    rules = tmp_path / "roles" / "server" / "files"
    rules.mkdir(parents=True)
    text = RULES.read_text()
    assert "> 26 * 3600" in text
    (rules / RULES.name).write_text(text.replace("> 26 * 3600", "> 28 * 3600"))
    tests = tmp_path / "tests" / "functional" / "prometheus"
    tests.mkdir(parents=True)
    shutil.copy(RULE_TESTS, tests)
    tested = subprocess.run(
        [promtool(), "test", "rules", RULE_TESTS.name], cwd=tests, capture_output=True, text=True, check=False
    )
    assert tested.returncode != 0
    assert re.search(r"MLflowNoRecentBackup", tested.stdout + tested.stderr), tested.stdout + tested.stderr


STATUS = ROOT / "roles" / "server" / "files" / "mlflow_status.py"


def test_each_check_adds_to_the_history_and_status_draws_it(mlflow_server, tmp_path):
    """Two checks of a healthy server, after a day of history with a fall two hours ago: the
    history keeps the last 24 hours only, and the picture says when MLflow was down."""
    out = tmp_path / "mlflow.prom"
    now = int(time.time())
    old = [f"{now - 25 * 3600} 1"]  # older than a day: dropped
    day = [f"{now - 3 * 3600 + i * 60} {0 if 60 <= i < 63 else 1}" for i in range(170)]
    (tmp_path / "mlflow.history").write_text("\n".join(old + day) + "\n")
    for _request in range(2):
        collect(tmp_path, mlflow_server.port)
    kept = (tmp_path / "mlflow.history").read_text().splitlines()
    assert len(kept) == 172 and kept[-1].endswith(" 1") and kept[0] == day[0], kept[:2]

    drawn = subprocess.run([sys.executable, str(STATUS), str(out)], capture_output=True, text=True, check=True)
    picture = {line[:10].strip(): line[10:] for line in drawn.stdout.splitlines() if line[:10].strip()}
    assert picture["health"].startswith("up (ok, ") and mlflow.__version__ in picture["health"], drawn.stdout
    assert "down 1 time, the last " in picture["last 24h"] and "of 172 checks up" in picture["last 24h"], drawn.stdout
    marks = drawn.stdout.splitlines()[3].split()[0]
    assert len(marks) == 24 and marks[:20] == "·" * 20 and "▄" in marks[20:], drawn.stdout
    assert picture["backups"].startswith("last good 2026-12-01 00:00 UTC") and "FAILED" not in picture["backups"]


def test_control_status_says_when_the_timer_wrote_nothing(tmp_path):
    drawn = subprocess.run(
        [sys.executable, str(STATUS), str(tmp_path / "mlflow.prom")], capture_output=True, text=True, check=False
    )
    assert drawn.returncode == 1 and "is the metrics timer on?" in drawn.stderr


def with_free_pages(path):
    """A real SQLite database whose deleted rows left pages on its free list, as gc does."""
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE spans (body TEXT)")
    connection.executemany("INSERT INTO spans VALUES (?)", [("x" * 4000,)] * 100)
    connection.commit()
    connection.execute("DELETE FROM spans")
    connection.commit()
    free, page = (connection.execute(f"PRAGMA {pragma}").fetchone()[0] for pragma in ("freelist_count", "page_size"))
    connection.close()
    return free * page


def test_free_pages_and_the_last_compaction_read_as_metrics(tmp_path):
    """What compact.yml would give back, from each database's own header, and what its last run gave back,
    from the record it leaves beside the textfile; the status picture says both."""
    expected = {}

    def databases(folder):
        (folder / "mlflow.db").unlink()
        expected["mlflow.db"] = with_free_pages(folder / "mlflow.db")

    (tmp_path / "mlflow.compact").write_text(json.dumps({"time": 1796256000, "ok": True, "freed_bytes": 81920}))
    out, samples = collect(tmp_path, free_port(), databases=databases)
    assert expected["mlflow.db"] > 0
    assert samples['mlflow_store_db_free_bytes{database="mlflow.db"}'] == expected["mlflow.db"]
    assert samples["mlflow_compact_last_run_timestamp_seconds"] == 1796256000
    assert samples["mlflow_compact_last_run_success"] == 1
    assert samples["mlflow_compact_last_freed_bytes"] == 81920
    code, said = check_metrics(out)
    assert code == 0, said
    drawn = subprocess.run([sys.executable, str(STATUS), str(out)], capture_output=True, text=True, check=True)
    picture = {line[:10].strip(): line[10:] for line in drawn.stdout.splitlines() if line[:10].strip()}
    assert picture["compact"].startswith("last run 2026-12-03 00:00 UTC ("), drawn.stdout
    assert picture["compact"].endswith(" ago), ok; gave back 81.9 KB"), drawn.stdout
    assert "of it free for compact.yml" in picture["disk"], drawn.stdout


def test_a_link_or_a_pipe_planted_in_the_database_folder_is_not_read(tmp_path):
    """Members may write in the database folder (0777), and the collector runs as root: a link
    planted as mlflow.db is not followed, and a pipe does not hold the timer. The control: the real
    database beside them reads."""
    real = tmp_path / "elsewhere.db"
    with_free_pages(real)

    def linked(folder):
        (folder / "mlflow.db").unlink()
        (folder / "mlflow.db").symlink_to(real)
        shutil.copy(real, folder / "basic_auth.db")

    _out, samples = collect(tmp_path, free_port(), databases=linked)
    assert samples['mlflow_store_db_free_bytes{database="basic_auth.db"}'] > 0
    assert 'mlflow_store_db_free_bytes{database="mlflow.db"}' not in samples

    def piped(folder):
        (folder / "mlflow.db").unlink()
        os.mkfifo(folder / "mlflow.db")

    _out, samples = collect(tmp_path, free_port(), databases=piped)
    assert samples['mlflow_store_db_free_bytes{database="basic_auth.db"}'] > 0
    assert 'mlflow_store_db_free_bytes{database="mlflow.db"}' not in samples
    # No compaction yet: its series are left out rather than made up.
    assert not any(name.startswith("mlflow_compact_") for name in samples)
