"""gc with authentication on: the timer's `mlflow gc` logs in as the MLflow admin with the role's
root-only record, so a member's deleted run goes with its artifacts. The control: without a login,
as the unit ran gc before, MLflow refuses the artifact deletion and the run stays. No secret shows
in the unit, in systemd's view of it or in its log."""

from conftest import SECOND_ADMIN_PASSWORD, STORE, UPGRADED, Tunnel, mlflow_as, run_playbook, run_rows

testinfra_hosts = ["mlflow-auth"]

GC = {**UPGRADED, "mlflow_server_gc_schedule": "daily", "mlflow_server_gc_older_than": "1s"}


def test_gc_logs_in_as_the_admin_from_the_root_only_record_and_purges_a_deleted_run(host):
    with Tunnel("ann"):
        answer = mlflow_as("ann", "doomed", "ann-gc", "ann")
    assert answer["status"] == 200, answer
    run_id, experiment_id = answer["value"]["run_id"], answer["value"]["experiment_id"]
    artifacts = f"{STORE}/mlruns/{experiment_id}/{run_id}/artifacts"
    assert host.file(f"{artifacts}/doomed.txt").exists

    # The control: gc as the unit ran it before, with no login. MLflow answers 401 to the
    # artifact deletion, and gc stops before it removes the run.
    control = host.run(
        "docker exec --env MLFLOW_TRACKING_URI=http://127.0.0.1:5000 mlflow-server "
        f"mlflow gc --backend-store-uri sqlite:////mlflow/db/mlflow.db --run-ids {run_id}"
    )
    assert control.rc != 0 and "401" in control.stdout + control.stderr, control.stdout + control.stderr
    assert run_rows(host, run_id) == "1"
    assert host.file(f"{artifacts}/doomed.txt").exists

    result = run_playbook(host, "site.yml", GC)
    assert result.rc == 0, result.failures
    gc = host.run("systemctl start mlflow-gc.service")
    journal = host.check_output("journalctl -u mlflow-gc.service --no-pager -o cat")
    assert gc.rc == 0, journal[-3000:]
    assert run_rows(host, run_id) == "0"
    # gc deletes the run's artifacts through the server; MLflow leaves the emptied folders.
    assert host.check_output(f"find {STORE}/mlruns/{experiment_id}/{run_id} -type f") == ""

    unit = host.file("/etc/systemd/system/mlflow-gc.service")
    assert unit.mode == 0o644
    for seen in (unit.content_string, host.check_output("systemctl show mlflow-gc.service"), journal):
        assert SECOND_ADMIN_PASSWORD not in seen

    again = run_playbook(host, "site.yml", GC)
    assert again.rc == 0 and again.changed == 0, again.failures
