# Copyright (c) mlops.mlflow developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""MLflow's state at a glance, for the admin: health now and over the last 24 hours, the version,
backups, gc, disk and members, from what the metrics timer wrote (mlflow.prom and mlflow.history).
Run by playbooks/status.yml; needs Python 3's standard library only.

    python3 /usr/local/lib/mlflow-status.py /var/lib/prometheus/node-exporter/mlflow.prom"""

import os
import re
import sys
import time

SAMPLE = re.compile(r'^(\w+)(?:\{(\w+)="((?:[^"\\]|\\.)*)"\})? (\S+)$')
# One mark per hour of the last 24, oldest first.
MARKS = {"up": "█", "some down": "▄", "down": "▁", "none": "·"}


def samples(text):
    """{name: value} and {name: {label value: value}} of the file's samples."""
    plain, labelled = {}, {}
    for line in text.splitlines():
        found = SAMPLE.match(line)
        if found:
            name, _key, label, value = found.groups()
            if label is None:
                plain[name] = float(value)
            else:
                labelled.setdefault(name, {})[label] = float(value)
    return plain, labelled


def when(stamp, now):
    if stamp is None:
        return "never"
    ago = max(0, int(now - stamp))
    if ago < 60:
        return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(stamp)) + f" ({ago} s ago)"
    text = f"{ago // 86400} d {ago % 86400 // 3600} h" if ago >= 86400 else f"{ago // 3600} h {ago % 3600 // 60} min"
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(stamp)) + f" ({text} ago)"


def size(value):
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return ""


def hours(checks, now):
    """The last 24 hours as marks, and (share up, times it went down, the last stretch down)."""
    marks = []
    for hour in range(24, 0, -1):
        seen = [up for stamp, up in checks if now - hour * 3600 <= stamp < now - (hour - 1) * 3600]
        state = "none" if not seen else "up" if all(seen) else "down" if not any(seen) else "some down"
        marks.append(MARKS[state])
    falls, last, start, previous = 0, None, None, 1
    for stamp, up in checks:
        if not up and previous:
            falls, start = falls + 1, stamp
        if up and not previous and start is not None:
            last = (start, stamp)
        previous = up
    if checks and not checks[-1][1] and start is not None:
        last = (start, None)
    share = sum(up for _stamp, up in checks) / len(checks) if checks else None
    return "".join(marks), share, falls, last


def picture(prom, history, now):
    plain, labelled = samples(prom)
    checks = []
    for line in history.splitlines():
        parts = line.split()
        if len(parts) == 2:
            checks.append((float(parts[0]), int(parts[1])))
    checked = plain.get("mlflow_health_last_run_timestamp_seconds")
    reason = next(iter(labelled.get("mlflow_health_reason", {"unknown": 1})))
    version = next(iter(labelled.get("mlflow_info", {})), "unknown")
    marks, share, falls, last = hours(checks, now)
    lines = [f"checked   {when(checked, now)}"]
    state = "up" if plain.get("mlflow_health_up") == 1 else "DOWN"
    latency = plain.get("mlflow_health_latency_seconds")
    lines.append(f"health    {state} ({reason}{f', {latency:.3f} s' if latency is not None else ''}), MLflow {version}")
    if share is None:
        lines.append("last 24h  no checks yet")
    else:
        down = f"; down {falls} time{'s' if falls != 1 else ''}" if falls else "; never down"
        if last:
            start, end = last
            stretch = time.strftime("%H:%M:%S", time.gmtime(start)) + "-"
            stretch += time.strftime("%H:%M:%S UTC", time.gmtime(end)) if end else "now"
            down += f", the last {stretch}"
        lines.append(f"last 24h  {share:.1%} of {len(checks)} checks up{down}")
        lines.append(f"          {marks}  (an hour each, oldest first: █ up, ▄ some down, ▁ down, · no check)")
    success = plain.get("mlflow_backup_last_success_timestamp_seconds")
    backup = f"last good {when(success, now)}"
    if "mlflow_backup_last_success_bytes" in plain:
        backup += f", {size(plain['mlflow_backup_last_success_bytes'])}"
    attempt = plain.get("mlflow_backup_last_run_success")
    backup += "; last attempt " + ("none" if attempt is None else "ok" if attempt == 1 else "FAILED")
    lines.append(f"backups   {backup}")
    if "mlflow_gc_last_run_timestamp_seconds" in plain:
        removed = ", ".join(
            f"{value:.0f} {kind}" for kind, value in sorted(labelled.get("mlflow_gc_last_removed", {}).items())
        )
        lines.append(
            f"gc        last run {when(plain['mlflow_gc_last_run_timestamp_seconds'], now)}, "
            f"exit {plain.get('mlflow_gc_last_exit_code', 0):.0f}" + (f"; removed {removed}" if removed else "")
        )
    else:
        lines.append("gc        not run yet (mlflow_server_gc_schedule)")
    if "mlflow_compact_last_run_timestamp_seconds" in plain:
        lines.append(
            f"compact   last run {when(plain['mlflow_compact_last_run_timestamp_seconds'], now)}, "
            + ("ok" if plain.get("mlflow_compact_last_run_success") == 1 else "FAILED")
            + f"; gave back {size(plain.get('mlflow_compact_last_freed_bytes', 0))}"
        )
    avail, total = plain.get("mlflow_store_filesystem_avail_bytes"), plain.get("mlflow_store_filesystem_size_bytes")
    disk = f"database {size(plain['mlflow_store_db_bytes'])}, " if "mlflow_store_db_bytes" in plain else ""
    free = sum(labelled.get("mlflow_store_db_free_bytes", {}).values())
    disk += f"{size(free)} of it free for compact.yml, " if free else ""
    disk += f"artifacts {size(plain.get('mlflow_store_artifacts_bytes', 0))}"
    if avail is not None and total:
        disk += f"; {size(avail)} free of {size(total)} ({avail / total:.0%})"
    lines.append(f"disk      {disk}")
    lines.append(f"members   {plain.get('mlflow_team_members', 0):.0f}")
    return "\n".join(lines)


def main(argv):
    prom = argv[1] if len(argv) > 1 else "/var/lib/prometheus/node-exporter/mlflow.prom"
    try:
        with open(prom, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as error:
        print(f"mlflow-status: cannot read {prom} ({error.strerror}): is the metrics timer on?", file=sys.stderr)
        return 1
    try:
        with open(os.path.splitext(prom)[0] + ".history", encoding="utf-8") as handle:
            kept = handle.read()
    except OSError:
        kept = ""
    print(picture(text, kept, time.time()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
