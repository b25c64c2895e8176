"""Restore on its worst days: an emptied store, a corrupt live database, a deleted store
directory, a fault in the middle of the swap and a failure after it. The data in the store
is moved aside unread; a failure puts it back. Each case is timed, in
.cache/logs/restore_times.json."""

import json
import time

import pytest
from conftest import (
    BROKEN_IMAGE,
    NEW,
    NEW_VERSION,
    PROJECT,
    STORE,
    assert_run_intact,
    backups,
    container,
    log_run,
    manifest,
    run_playbook,
    server_version,
    sha256_tree,
    sqlite,
)

OLD_BACKUP = "/root/backup-2.22.1"  # copied aside by test_1 before retention could rotate it out
# Outside the scenario's ephemeral directory, which destroy removes.
TIMES = PROJECT / ".cache" / "logs" / "restore_times.json"


def timed_restore(host, case, extra):
    started = time.monotonic()
    result = run_playbook(host, "restore.yml", {**NEW, **extra})
    seconds = round(time.monotonic() - started, 1)
    times = json.loads(TIMES.read_text()) if TIMES.exists() else {}
    times[case] = seconds
    TIMES.parent.mkdir(parents=True, exist_ok=True)
    TIMES.write_text(json.dumps(times, indent=1))
    print(f"{case}: rc={result.rc} in {seconds} s")
    return result


def last_good(host):
    """The newest backup holding runs that is not marked."""
    return [b for b in backups(host) if not manifest(host, b).get("anomaly") and manifest(host, b)["counts"]["runs"]][
        -1
    ]


def kept_dirs(host):
    return host.check_output(f"ls -1d {STORE}/kept-before-restore-* 2>/dev/null || true").split()


def assert_store_equals(host, backup):
    found = manifest(host, backup)
    artifacts = {path: entry["sha256"] for path, entry in found["files"].items() if path.startswith("mlruns/")}
    assert {f"mlruns/{path}": digest for path, digest in sha256_tree(host, f"{STORE}/mlruns").items()} == artifacts
    assert int(sqlite(host, f"{STORE}/db/mlflow.db", "SELECT count(*) FROM runs")) == found["counts"]["runs"]
    assert host.file(f"{STORE}/db/mlflow.db").mode == 0o666
    assert host.file(f"{STORE}/mlruns").mode == 0o777
    assert host.file(STORE).mode == 0o700


def test_restore_of_an_emptied_store_keeps_the_empty_one_aside(host, mlflow, ledger, tmp_path):
    backup = last_good(host)
    assert sqlite(host, f"{STORE}/db/mlflow.db", "SELECT count(*) FROM runs") == "0"  # emptied by test_3
    artifacts_before = sha256_tree(host, f"{STORE}/mlruns")
    kept_before = set(kept_dirs(host))
    result = timed_restore(host, "emptied store", {"mlflow_server_restore_from": backup.rsplit("/", 1)[1]})
    assert result.rc == 0, result.failures
    [kept] = sorted(set(kept_dirs(host)) - kept_before)
    assert sha256_tree(host, f"{kept}/mlruns") == artifacts_before
    assert host.file(kept).mode == 0o700
    assert any(f"The data it replaced is kept in {kept}" in m for m in result.messages), result.messages
    assert server_version(host) == NEW_VERSION
    assert_store_equals(host, backup)
    for run in ledger:
        assert_run_intact(mlflow, run, tmp_path)


def test_restore_replaces_newer_writes_and_keeps_them_aside(host, mlflow, ledger, tmp_path):
    backup = last_good(host)
    late = log_run(mlflow, tmp_path, "after-the-backup")
    kept_before = set(kept_dirs(host))
    result = timed_restore(host, "normal day (a run logged after the backup)", {"mlflow_server_restore_from": backup})
    assert result.rc == 0, result.failures
    [kept] = sorted(set(kept_dirs(host)) - kept_before)
    assert sqlite(host, f"{kept}/db/mlflow.db", f"SELECT count(*) FROM runs WHERE run_uuid = '{late['run_id']}'") == "1"
    with pytest.raises(mlflow.exceptions.MlflowException):
        mlflow.MlflowClient().get_run(late["run_id"])
    assert_store_equals(host, backup)


def test_restore_over_a_corrupt_live_database(host, mlflow, ledger, tmp_path):
    backup = last_good(host)
    host.check_output(f"python3 -c \"f = open('{STORE}/db/mlflow.db', 'r+b'); f.seek(0); f.write(b'garbage' * 512)\"")
    corrupt = host.check_output(f"sha256sum {STORE}/db/mlflow.db").split()[0]
    kept_before = set(kept_dirs(host))
    result = timed_restore(host, "corrupt live database", {"mlflow_server_restore_from": backup})
    assert result.rc == 0, result.failures
    [kept] = sorted(set(kept_dirs(host)) - kept_before)
    # The stopped way, which never reads the live database, and the report says why.
    assert any("with MLflow stopped: the live mlflow.db" in m for m in result.messages), result.messages
    # Moved aside unread: byte for byte the corrupt file.
    assert host.check_output(f"sha256sum {kept}/db/mlflow.db").split()[0] == corrupt
    assert_store_equals(host, backup)
    for run in ledger:
        assert_run_intact(mlflow, run, tmp_path)


def test_restore_into_a_deleted_store_directory_while_mlflow_runs(host, mlflow, ledger, tmp_path):
    backup = last_good(host)
    host.check_output(f"rm -rf {STORE}")
    result = timed_restore(host, "store directory deleted", {"mlflow_server_restore_from": backup})
    assert result.rc == 0, result.failures
    assert container(host)["State"]["Running"]
    assert server_version(host) == NEW_VERSION
    assert_store_equals(host, backup)
    # MLflow serves the restored directory, not the deleted one it had mounted.
    for run in ledger:
        assert_run_intact(mlflow, run, tmp_path)


SWAP = "Move the store's data aside and swap the backup in"
WAY_BACK_DONE = "Fail with what happened, naming the backup and the previous data"
CHECK_AND_WRITE = (
    "Check the backup's manifest, checksums, integrity and schema, and write it into the running MLflow where it can"
)


@pytest.mark.parametrize(
    "live, error, said",
    [
        # MLflow stopped: mlruns/ itself is renamed aside, after db/ was; a mount point gives EBUSY. The role's way
        # back puts the previous data back and starts MLflow again.
        (
            False,
            "Device or resource busy",
            [f"failed at '{SWAP}'", "the previous data was put back", "MLflow serves it again"],
        ),
        # Into the running MLflow, in the check's module run: mlruns/'s entries move to the kept folder, across the
        # mount (EXDEV), after the live databases were copied aside. The module puts back what it did; MLflow never
        # stopped.
        (
            True,
            "Invalid cross-device link",
            ["what was there before was put back", "MLflow was not stopped"],
        ),
    ],
    ids=["stopped", "live"],
)
def test_a_fault_in_the_middle_of_the_swap_puts_everything_back(host, mlflow, ledger, tmp_path, live, error, said):
    """A real fault: mlruns/ is a mount point."""
    backup = last_good(host)
    late = log_run(mlflow, tmp_path, "before-the-fault")
    before = sha256_tree(host, STORE)
    started = container(host)["State"]["StartedAt"]
    host.check_output(f"mount --bind {STORE}/mlruns {STORE}/mlruns")
    try:
        result = timed_restore(
            host,
            f"fault in the middle (mlruns/ a mount point, {'live' if live else 'stopped'})",
            # Runs left in flight by earlier tests would send the live case the stopped way.
            {
                "mlflow_server_restore_from": backup,
                "mlflow_server_restore_live": live,
                "mlflow_server_restore_allow_running": live,
            },
        )
    finally:
        host.check_output(f"umount {STORE}/mlruns")
    assert result.rc != 0
    failure = result.failures[-1]
    assert f"Restoring {backup}" in failure or f"restoring {backup} into the live {STORE} failed" in failure, failure
    # Each error happens only on the way its case names: EBUSY renaming mlruns/ itself, EXDEV moving its entries.
    assert error in failure and all(part in failure for part in said), failure
    assert f"the backup {backup} is unchanged" in failure
    # Into the running MLflow, the check's module run failed while it wrote, and no way back ran after it.
    failed = [name.split(" : ")[-1] for name, outcome in result.results() if outcome.get("failed")]
    if live:
        assert failed == [CHECK_AND_WRITE], failed
    else:
        assert failed[0] == SWAP and failed[-1] == WAY_BACK_DONE, failed
    assert sha256_tree(host, STORE) == before
    assert server_version(host) == NEW_VERSION
    # Into the running MLflow, a failure leaves it serving: no stop, no restart.
    assert (container(host)["State"]["StartedAt"] == started) == live
    assert_run_intact(mlflow, late, tmp_path)


def test_a_failure_after_the_swap_puts_the_previous_data_back(host, mlflow, ledger, tmp_path):
    """A real fault: a 2.22.1 backup must be migrated, and the image's `mlflow db upgrade` fails."""
    late = log_run(mlflow, tmp_path, "before-the-failed-restore")
    before = {path: digest for path, digest in sha256_tree(host, STORE).items() if not path.startswith("kept-")}
    result = timed_restore(
        host,
        "failure after the swap (migration fails)",
        {"mlflow_server_restore_from": OLD_BACKUP, "mlflow_server_image": BROKEN_IMAGE},
    )
    assert result.rc != 0
    failure = result.failures[-1]
    assert f"Restoring {OLD_BACKUP} failed at 'Migrate the restored schema with {BROKEN_IMAGE}'" in failure
    assert "'mlflow db upgrade' fails on purpose" in failure
    assert (
        f"The previous data is back in {STORE} and MLflow serves it again; the backup {OLD_BACKUP} is unchanged"
        in failure
    )
    after = {path: digest for path, digest in sha256_tree(host, STORE).items() if not path.startswith("kept-")}
    assert after == before
    assert server_version(host) == NEW_VERSION
    assert_run_intact(mlflow, late, tmp_path)
    for run in ledger:
        assert_run_intact(mlflow, run, tmp_path)
