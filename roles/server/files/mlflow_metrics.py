# Copyright (c) mlops.mlflow developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Write MLflow's health, version, last backup, last gc, last compaction and store sizes as node_exporter
textfile metrics, by rename, so node_exporter never reads half a file. Run as root by
mlflow-metrics.timer (the server role); needs Python 3's standard library only.

    python3 /usr/local/lib/mlflow-metrics.py --port 500 --store /opt/mlflow --backup-dir /var/backups/mlflow \
        --out /var/lib/prometheus/node-exporter/mlflow.prom \
        [--address 127.0.0.1] [--auth-user admin --auth-password-file /opt/mlflow/secrets/admin_password] \
        [--server-metrics]

Each check also adds "<time> <up>" to the health history beside the file (mlflow.history; the last
24 hours), which the status playbook (files/mlflow_status.py) draws. playbooks/compact.yml leaves
the record of its last run beside it too (mlflow.compact, JSON).

With --server-metrics it also reads MLflow's own /metrics (mlflow server --expose-prometheus) and adds
its mlflow_* families: node_exporter then serves them, and Prometheus needs no MLflow login.

The series and what each means: the collection's README, section Metrics and alerts."""

import argparse
import base64
import calendar
import http.client
import json
import os
import re
import stat
import subprocess
import sys
import time

MEMBER_MARKER = "mlops.mlflow member"
BACKUP_NAME = re.compile(r"^[0-9]{8}T[0-9]{6}Z-[a-z][a-z0-9-]*$")


def get(address, port, path, auth=None, timeout=5.0, limit=65536):
    """(status, body) of GET path on MLflow's address and port, with a tunnel client's Host header
    (so MLflow's allowed hosts stay as they are); at most limit bytes of the body."""
    headers = {"Host": f"localhost:{port}"}
    if auth:
        headers["Authorization"] = "Basic " + base64.b64encode(auth.encode()).decode()
    connection = http.client.HTTPConnection(address, port, timeout=timeout)
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        return response.status, response.read(limit).decode("utf-8", "replace")
    finally:
        connection.close()


def health(address, port, auth):
    """(up, reason, seconds, version): MLflow answers /health with OK, or why not."""
    started = time.monotonic()
    try:
        status, body = get(address, port, "/health")
    except ConnectionRefusedError:
        return 0, "connection refused", time.monotonic() - started, None
    except TimeoutError:
        return 0, "timeout", time.monotonic() - started, None
    except (OSError, http.client.HTTPException) as error:
        return 0, type(error).__name__, time.monotonic() - started, None
    seconds = time.monotonic() - started
    if status != 200 or body.strip() != "OK":
        return 0, f"http {status}", seconds, None
    try:
        status, body = get(address, port, "/version", auth)
    except (OSError, http.client.HTTPException):
        return 1, "ok", seconds, None
    return 1, "ok", seconds, body.strip() if status == 200 else None


def admin_login(user, password_file):
    """user:password from the role's root-only record of the admin's password, or None."""
    if not user or not password_file:
        return None
    try:
        with open(password_file, encoding="utf-8") as handle:
            return f"{user}:{handle.read().strip()}"
    except OSError:
        return None


def server_metrics(address, port, auth):
    """(up, body): MLflow's /metrics text when it answered 200 (up 1), else (0, "")."""
    try:
        status, body = get(address, port, "/metrics", auth, timeout=10.0, limit=8 << 20)
    except (OSError, http.client.HTTPException):
        return 0, ""
    return (1, body) if status == 200 else (0, "")


def reexport(body, reserved):
    """The mlflow_* families of an exposition text, each with its HELP, TYPE and samples, except
    those named in reserved (this collector's own): nothing else of the text reaches the file."""
    kept, family = [], None
    for line in body.splitlines():
        if line.startswith("#"):
            parts = line.split(" ", 3)
            if len(parts) < 3 or parts[1] not in ("HELP", "TYPE"):
                continue
            family = parts[2]
        elif not line.strip() or family is None or not line.startswith(family):
            continue
        if family.startswith("mlflow_") and family not in reserved:
            kept.append(line)
    return "\n".join(kept) + "\n" if kept else ""


def tree_bytes(path):
    """Bytes of the regular files under path, links not followed; 0 when it is missing."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                info = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            if not os.path.islink(os.path.join(root, name)):
                total += info.st_size
    return total


DATABASES = ("mlflow.db", "basic_auth.db")
SQLITE_HEADER = b"SQLite format 3\x00"


def free_bytes(path):
    """Bytes on a SQLite database's free list (as its header says at the last checkpoint): what a
    VACUUM (playbooks/compact.yml) would give back; None when path is not a regular SQLite file.
    The folder is open to members, so a link is not followed and a pipe is not waited on."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(descriptor, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            return None
        header = handle.read(100)
    if len(header) < 100 or not header.startswith(SQLITE_HEADER):
        return None
    page_size = int.from_bytes(header[16:18], "big")
    return (65536 if page_size == 1 else page_size) * int.from_bytes(header[36:40], "big")


def compaction(path):
    """(time, ok, freed bytes) of the last playbooks/compact.yml run, from the record it leaves
    beside the textfile; Nones before the first."""
    try:
        with open(path, encoding="utf-8") as handle:
            record = json.load(handle)
        return float(record["time"]), 1 if record["ok"] else 0, record.get("freed_bytes")
    except (OSError, ValueError, KeyError, TypeError):
        return None, None, None


def backups(backup_dir):
    """(last success time, its bytes, last run time, last run ok): from the newest finished
    backup's manifest and the record of the newest attempt (mlflow_backup's last_run.json)."""
    success = size = None
    try:
        names = sorted(name for name in os.listdir(backup_dir) if BACKUP_NAME.match(name))
    except OSError:
        names = []
    for name in reversed(names):
        try:
            with open(os.path.join(backup_dir, name, "manifest.json"), encoding="utf-8") as handle:
                manifest = json.load(handle)
            created = time.strptime(manifest["created"], "%Y-%m-%dT%H:%M:%SZ")
        except (OSError, ValueError, KeyError, TypeError):
            continue
        success = calendar.timegm(created)
        size = manifest.get("bytes")
        break
    try:
        with open(os.path.join(backup_dir, "last_run.json"), encoding="utf-8") as handle:
            last = json.load(handle)
        run_time, run_ok = float(last["time"]), 1 if last["ok"] else 0
    except (OSError, ValueError, KeyError, TypeError):
        run_time, run_ok = success, (1 if success is not None else None)
    return success, size, run_time, run_ok


REMOVED = {
    "runs": re.compile(r"^Run with ID \S+ has been permanently deleted\.$"),
    "experiments": re.compile(r"^Experiment with ID \S+ has been permanently deleted\.$"),
    "logged_models": re.compile(r"^Logged model with ID \S+ has been permanently deleted\.$"),
    "jobs": re.compile(r"^Job with ID \S+ has been permanently deleted\.$"),
}
TRACES = re.compile(r"^Trace retention: ([0-9]+) traces deleted\.$")


def run(command):
    """A command's stdout, or "" when it cannot run."""
    try:
        return subprocess.run(  # noqa: S603  # fixed arguments and a unit name from the role
            command, capture_output=True, text=True, check=False, timeout=20
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def gc_unit(unit):
    """(last run time, exit code, removed) of the gc service from systemd and its journal, or
    (None, None, {}) before its first run. removed counts what that run deleted, by kind."""
    shown = run(
        ["/usr/bin/systemctl", "show", unit, "--timestamp=unix",
         "--property=ExecMainExitTimestamp,ExecMainStatus,InvocationID"]
    )  # fmt: skip
    values = dict(line.split("=", 1) for line in shown.splitlines() if "=" in line)
    stamp = values.get("ExecMainExitTimestamp", "").lstrip("@")
    if not stamp.isdigit():
        return None, None, {}
    return float(stamp), int(values.get("ExecMainStatus") or 0), removed(values.get("InvocationID", ""))


def removed(invocation):
    """What the gc run with that invocation id printed it deleted: {kind: count}. Its lines are the gc
    service's (SyslogIdentifier mlflow-gc) after the run's first line, "mlflow-gc run <id>"; {} until
    journald has read that line."""
    if not re.fullmatch(r"[0-9a-f]{32}", invocation):
        return {}
    logged = run(["/usr/bin/journalctl", "SYSLOG_IDENTIFIER=mlflow-gc", "--no-pager", "-o", "cat", "-n", "20000"])
    lines = logged.splitlines()
    marker = f"mlflow-gc run {invocation}"
    if marker not in lines:
        return {}
    lines = lines[len(lines) - lines[::-1].index(marker) :]
    lines = lines[: next((i for i, line in enumerate(lines) if line.startswith("mlflow-gc run ")), len(lines))]
    counts = {kind: sum(1 for line in lines if pattern.match(line)) for kind, pattern in REMOVED.items()}
    traces = [int(found.group(1)) for found in map(TRACES.match, lines) if found]
    if traces:
        counts["traces"] = traces[-1]
    return counts


def members(accounts_file="/etc/passwd"):
    """Accounts that onboarding (the team role) made: their comment carries its marker."""
    try:
        with open(accounts_file, encoding="utf-8") as handle:
            return sum(1 for line in handle if len(line.split(":")) > 4 and MEMBER_MARKER in line.split(":")[4])
    except OSError:
        return 0


def label(value):
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")


def render(samples):
    """The textfile: a HELP and TYPE line per series, then its samples; None values are left out."""
    lines = []
    for name, help_text, values in samples:
        values = [(labels, value) for labels, value in values if value is not None]
        if not values:
            continue
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
        for labels, value in values:
            inside = ",".join(f'{key}="{label(text)}"' for key, text in labels.items())
            text = str(int(value)) if float(value).is_integer() else repr(float(value))
            lines.append(f"{name}{{{inside}}} {text}" if inside else f"{name} {text}")
    return "\n".join(lines) + "\n"


def collect(args, now, login):
    up, reason, seconds, version = health(args.address, args.port, login)
    success, size, run_time, run_ok = backups(args.backup_dir)
    gc_time, gc_code, gc_removed = gc_unit(args.gc_unit)
    compact_time, compact_ok, compact_freed = compaction(os.path.splitext(args.out)[0] + ".compact")
    db_dir = os.path.join(args.store, "db")
    try:
        disk = os.statvfs(args.store)
        avail, total = disk.f_bavail * disk.f_frsize, disk.f_blocks * disk.f_frsize
    except OSError:
        avail = total = None
    return [
        ("mlflow_health_up", "1 when MLflow answered /health with OK at the last check, else 0.", [({}, up)]),
        (
            "mlflow_health_reason",
            "Why the last check judged so (ok, connection refused, timeout, http <status>).",
            [({"reason": reason}, 1)],
        ),
        ("mlflow_health_latency_seconds", "How long /health took to answer at the last check.", [({}, seconds)]),
        ("mlflow_health_last_run_timestamp_seconds", "When the last check ran.", [({}, now)]),
        ("mlflow_info", "The MLflow version that answered /version.", [({"version": version}, 1 if version else None)]),
        ("mlflow_backup_last_success_timestamp_seconds", "When the newest finished backup was made.", [({}, success)]),
        ("mlflow_backup_last_success_bytes", "The size of the newest finished backup.", [({}, size)]),
        ("mlflow_backup_last_run_timestamp_seconds", "When the newest backup attempt ended.", [({}, run_time)]),
        ("mlflow_backup_last_run_success", "1 when the newest backup attempt worked, else 0.", [({}, run_ok)]),
        ("mlflow_gc_last_run_timestamp_seconds", "When mlflow gc last ended.", [({}, gc_time)]),
        ("mlflow_gc_last_exit_code", "mlflow gc's last exit code (0: it worked).", [({}, gc_code)]),
        (
            "mlflow_gc_last_removed",
            "What the last gc run deleted, by kind (runs, experiments, logged_models, jobs; traces with a retention).",
            [({"kind": kind}, count) for kind, count in sorted(gc_removed.items())],
        ),
        (
            "mlflow_store_db_bytes",
            "Bytes of the SQLite databases and their journals in the store.",
            [({}, tree_bytes(db_dir) if os.path.isdir(db_dir) else None)],
        ),
        (
            "mlflow_store_db_free_bytes",
            "Bytes on each SQLite database's free list, which playbooks/compact.yml gives back to the filesystem.",
            [({"database": name}, free_bytes(os.path.join(db_dir, name))) for name in DATABASES],
        ),
        ("mlflow_compact_last_run_timestamp_seconds", "When compact.yml last compacted.", [({}, compact_time)]),
        ("mlflow_compact_last_run_success", "1 when that compaction worked, else 0.", [({}, compact_ok)]),
        ("mlflow_compact_last_freed_bytes", "Bytes that compaction gave back.", [({}, compact_freed)]),
        (
            "mlflow_store_artifacts_bytes",
            "Bytes of the local artifacts (mlruns/).",
            [({}, tree_bytes(os.path.join(args.store, "mlruns")))],
        ),
        ("mlflow_store_filesystem_avail_bytes", "Free bytes on the store's filesystem.", [({}, avail)]),
        ("mlflow_store_filesystem_size_bytes", "Size of the store's filesystem.", [({}, total)]),
        ("mlflow_team_members", "Accounts onboarding made on this server.", [({}, members())]),
    ]


def server_samples(args, login):
    """MLflow's own /metrics, re-exported (--server-metrics): whether it answered, and its families."""
    up, body = server_metrics(args.address, args.port, login)
    own = ("mlflow_server_metrics_up", "1 when MLflow's own /metrics answered at the last check, else 0.", [({}, up)])
    return [own], body


def write(path, text):
    """Into path's folder under a new temporary name (never through a link planted there), then
    renamed over path: node_exporter reads the old file or the new one, never half of one."""
    partial = f"{path}.{os.getpid()}.tmp"
    if os.path.lexists(partial):
        os.unlink(partial)
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(partial, 0o644)
    os.replace(partial, path)


HISTORY_SECONDS = 24 * 3600


def history(path, now, up):
    """The health history with this check added and checks older than a day left out."""
    kept = []
    try:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                parts = line.split()
                if len(parts) == 2 and parts[1] in ("0", "1") and now - float(parts[0]) < HISTORY_SECONDS:
                    kept.append(line.strip())
    except (OSError, ValueError):
        kept = []
    return "\n".join([*kept, f"{int(now)} {up}"]) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--store", required=True)
    parser.add_argument("--backup-dir", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--gc-unit", default="mlflow-gc.service")
    parser.add_argument("--auth-user", default="")
    parser.add_argument("--auth-password-file", default="")
    parser.add_argument("--server-metrics", action="store_true")
    args = parser.parse_args(argv)
    now = time.time()
    login = admin_login(args.auth_user, args.auth_password_file)
    samples = collect(args, now, login)
    text = render(samples)
    if args.server_metrics:
        own, body = server_samples(args, login)
        text += render(own) + reexport(body, {name for name, _help, _values in samples + own})
    write(args.out, text)
    up = {name: values for name, _help, values in samples}["mlflow_health_up"][0][1]
    kept = os.path.splitext(args.out)[0] + ".history"
    write(kept, history(kept, now, up))
    return 0


if __name__ == "__main__":
    sys.exit(main())
