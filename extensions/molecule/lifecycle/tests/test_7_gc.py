"""Housekeeping: with mlflow_server_gc_schedule set, a systemd timer runs `mlflow gc`, which
removes runs deleted long enough ago and their artifacts, and leaves live runs alone; with
mlflow_server_trace_retention the same timer deletes old traces. What each run removed lands in
the metrics file."""

import re
import time

from conftest import NEW, STORE, assert_run_intact, backups, log_run, run_playbook, sqlite, wait_for
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
from node_exporter import run_metrics

GC = {"mlflow_server_gc_schedule": "*:*:0/10", "mlflow_server_gc_older_than": "1s"}
# A schedule that does not fire during the tests below, which start gc themselves and read
# what that one run removed.
QUIET = {**GC, "mlflow_server_gc_schedule": "daily"}


def unit(host, name, prop):
    return host.check_output(f"systemctl show {name} -p {prop} --value").strip()


def test_the_gc_timer_purges_deleted_runs_and_their_artifacts_only(host, mlflow, ledger, tmp_path):
    client = mlflow.MlflowClient()
    kept = log_run(mlflow, tmp_path, "gc-kept")
    doomed = log_run(mlflow, tmp_path, "gc-doomed")
    experiment_id = client.get_run(doomed["run_id"]).info.experiment_id
    artifacts = f"{STORE}/mlruns/{experiment_id}/{doomed['run_id']}"
    assert host.file(f"{artifacts}/artifacts/{doomed['artifact']}").exists
    client.delete_run(doomed["run_id"])

    result = run_playbook(host, "site.yml", {**NEW, **GC})
    assert result.rc == 0, result.failures
    assert unit(host, "mlflow-gc.timer", "ActiveState") == "active"
    # systemd itself fires it: LastTriggerUSec is set only by the timer.
    assert wait_for(lambda: unit(host, "mlflow-gc.timer", "LastTriggerUSec") not in ("", "0", "n/a"), 60)
    assert wait_for(
        lambda: (
            sqlite(host, f"{STORE}/db/mlflow.db", f"SELECT count(*) FROM runs WHERE run_uuid = '{doomed['run_id']}'")
            == "0"
        ),
        90,
    )
    assert unit(host, "mlflow-gc.service", "Result") == "success"
    # gc deletes the run's artifacts through the server; MLflow leaves the emptied folders.
    assert host.check_output(f"find {artifacts} -type f") == ""
    assert_run_intact(mlflow, kept, tmp_path)
    for run in ledger:
        assert_run_intact(mlflow, run, tmp_path)


DB = f"{STORE}/db/mlflow.db"
PROM = "/var/lib/prometheus/node-exporter/mlflow.prom"


def metrics(host):
    """{series{labels}: value} of the metrics file the metrics timer writes now."""
    run_metrics(host)
    text = host.file(PROM).content_string
    return {name: float(value) for name, value in re.findall(r"^(mlflow_\S+) (\S+)$", text, re.M)}


def removed(host):
    """mlflow_gc_last_removed by kind, from the metrics file the metrics timer writes now."""
    return {
        found.group(1): value
        for name, value in metrics(host).items()
        if (found := re.fullmatch(r'mlflow_gc_last_removed\{kind="(\w+)"\}', name))
    }


def database(host):
    """(file bytes, pages on the free list, traces) of the tracking database."""
    return (
        host.file(DB).size,
        int(sqlite(host, DB, "PRAGMA freelist_count")),
        int(sqlite(host, DB, "SELECT count(*) FROM trace_info")),
    )


def test_what_a_gc_run_removed_lands_in_the_metrics(host, mlflow, tmp_path):
    result = run_playbook(host, "site.yml", {**NEW, **QUIET})
    assert result.rc == 0, result.failures
    # A run the 10-second schedule above started may still be going (a big store takes gc a while):
    # a start now would join it, and it looked for deleted runs before the one below.
    assert wait_for(lambda: unit(host, "mlflow-gc.service", "ActiveState") in ("inactive", "failed"), 180)
    doomed = log_run(mlflow, tmp_path, "gc-counted")
    mlflow.MlflowClient().delete_run(doomed["run_id"])
    time.sleep(1.5)  # older than mlflow_server_gc_older_than
    host.check_output("systemctl start mlflow-gc.service")
    # journald takes gc's output from its pipe on its own time, so on a busy host the metrics
    # may count it a check later. A check every 3 s: systemd refuses a sixth start of a unit within
    # 10 s (its start limit), and each check starts the metrics service.
    assert wait_for(lambda: removed(host).get("runs") == 1, 45, interval=3), removed(host)
    # The next run finds nothing to remove, and says so (not the run before's count).
    host.check_output("systemctl start mlflow-gc.service")
    assert wait_for(lambda: removed(host).get("runs") == 0, 45, interval=3), removed(host)


def test_trace_retention_deletes_old_traces_through_the_server(host, mlflow, ledger, tmp_path):
    """Traces of a few KB each, logged by the real client; a retention of 1 s deletes them all, with
    their files, at the next gc run. SQLite keeps the file's size (the pages go to its free list, for MLflow to
    reuse) until a VACUUM. The control: the same gc run without a retention keeps every trace."""
    before = database(host)
    experiment_id = mlflow.set_experiment("gc-traces").experiment_id
    trace_files = f"find {STORE}/mlruns/{experiment_id}/traces -type f 2>/dev/null | wc -l"
    traces = []
    for step in range(20):
        with mlflow.start_span(name=f"step-{step}") as span:
            span.set_inputs({"prompt": "x" * 2048, "step": step})
            traces.append(span.trace_id)
            for inner in range(4):
                with mlflow.start_span(name=f"inner-{inner}") as child:
                    child.set_outputs({"text": "y" * 1024})
    mlflow.flush_trace_async_logging()
    # A file where each trace keeps its data files: the client writes its own there only for
    # some traces (those whose spans did not reach the database first).
    attachment = tmp_path / "attachment.txt"
    attachment.write_text("trace data\n")
    client = mlflow.MlflowClient()
    for trace in traces:
        location = client.get_trace(trace).info.tags["mlflow.artifactLocation"]
        get_artifact_repository(location).log_artifact(str(attachment))
    logged = database(host)
    assert logged[2] == before[2] + 20, (before, logged)
    assert int(host.check_output(trace_files)) >= 20
    assert logged[0] > before[0], (before, logged)

    # The control: gc as before, no retention.
    host.check_output("systemctl start mlflow-gc.service")
    assert database(host)[2] == logged[2]
    assert wait_for(lambda: "runs" in removed(host), 45, interval=3), removed(host)
    assert "traces" not in removed(host)

    retention = {**NEW, **QUIET, "mlflow_server_trace_retention": "1s"}
    result = run_playbook(host, "site.yml", retention)
    assert result.rc == 0, result.failures
    gc = host.run("systemctl start mlflow-gc.service")
    assert gc.rc == 0, host.check_output("journalctl -u mlflow-gc.service --no-pager -o cat | tail -20")
    after = database(host)
    print(f"mlflow.db: {before[0]} bytes before the traces, {logged[0]} with them, {after[0]} after the retention "
          f"({after[1]} free pages)")  # fmt: skip
    assert after[2] == 0, (logged, after)
    # Their data files too, which MLflow's delete leaves.
    assert int(host.check_output(trace_files)) == 0
    assert after[0] == logged[0] and after[1] > logged[1], (logged, after)
    assert wait_for(lambda: removed(host).get("traces") == 20, 45, interval=3), removed(host)
    again = run_playbook(host, "site.yml", retention)
    assert again.rc == 0 and again.changed == 0, again.failures
    for run in ledger:
        assert_run_intact(mlflow, run, tmp_path)


def test_compact_gives_the_freed_pages_back_after_a_backup(host, mlflow, ledger, tmp_path):
    """playbooks/compact.yml after the retention above: a pre-compact backup, MLflow stopped, VACUUM,
    MLflow back; the file shrinks in place (same inode, same mode). A second run finds no free
    pages and leaves MLflow alone."""
    freed = database(host)
    assert freed[1] > 0, freed  # the control: the retention left pages to give back
    page = int(sqlite(host, DB, "PRAGMA page_size"))
    # The metrics say what a compaction would give back, and that none ran yet.
    seen = metrics(host)
    assert seen['mlflow_store_db_free_bytes{database="mlflow.db"}'] == freed[1] * page, seen
    assert "mlflow_compact_last_run_timestamp_seconds" not in seen
    inode = host.check_output(f"stat -c '%i %a' {DB}")
    taken = len(backups(host, "pre-compact"))
    result = run_playbook(host, "compact.yml", NEW)
    assert result.rc == 0, result.failures
    after = database(host)
    print(f"mlflow.db: {freed[0]} bytes with {freed[1]} free pages, {after[0]} after compact.yml")
    assert after[1] == 0 and after[0] < freed[0], (freed, after)
    # What it gave back lands in the metrics.
    seen = metrics(host)
    assert seen['mlflow_store_db_free_bytes{database="mlflow.db"}'] == 0, seen
    assert seen["mlflow_compact_last_run_success"] == 1, seen
    assert seen["mlflow_compact_last_freed_bytes"] == freed[0] - after[0], seen
    compacted = seen["mlflow_compact_last_run_timestamp_seconds"]
    assert host.check_output(f"stat -c '%i %a' {DB}") == inode
    assert len(backups(host, "pre-compact")) == taken + 1
    for run in ledger:
        assert_run_intact(mlflow, run, tmp_path)

    started = host.check_output("docker inspect -f '{{.State.StartedAt}}' mlflow-server")
    again = run_playbook(host, "compact.yml", NEW)
    assert again.rc == 0 and again.changed == 0, again.failures
    assert host.check_output("docker inspect -f '{{.State.StartedAt}}' mlflow-server") == started
    assert len(backups(host, "pre-compact")) == taken + 1
    assert metrics(host)["mlflow_compact_last_run_timestamp_seconds"] == compacted


def test_an_empty_schedule_removes_the_timer(host):
    result = run_playbook(host, "site.yml", NEW)
    assert result.rc == 0, result.failures
    assert not host.file("/etc/systemd/system/mlflow-gc.timer").exists
    assert not host.file("/etc/systemd/system/mlflow-gc.service").exists
    assert not host.file("/usr/local/lib/mlflow-traces.py").exists
    assert "mlflow-gc" not in host.check_output("systemctl list-timers --all")
    again = run_playbook(host, "site.yml", NEW)
    assert again.rc == 0 and again.changed == 0
