# Copyright (c) mlops.mlflow developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Delete the traces older than a retention, in every experiment (deleted ones too), through the
MLflow server (MLFLOW_TRACKING_URI, and the admin's login with authentication on). mlflow gc
collects no traces. Run by mlflow-gc.service after gc, inside the MLflow container, on its stdin:

    docker exec -i mlflow-server python - 30d < /usr/local/lib/mlflow-traces.py

Prints one line per experiment it trimmed, then "Trace retention: N traces deleted." SQLite gives
the freed pages back to the filesystem only after a VACUUM; until then MLflow reuses them."""

import re
import sys
import time

DURATION = re.compile(r"(?:([0-9]+)d)?(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?")


def seconds(text):
    """Seconds in a duration such as 30d or 12h30m (mlflow gc's --older-than form)."""
    found = DURATION.fullmatch(text)
    if not text or not found:
        raise SystemExit(f"mlflow-traces: cannot read the retention {text!r}; give a duration such as 30d or 12h")
    days, hours, minutes, secs = (int(part or 0) for part in found.groups())
    return ((days * 24 + hours) * 60 + minutes) * 60 + secs


def experiments(client):
    from mlflow.entities import ViewType

    token = None
    while True:
        page = client.search_experiments(view_type=ViewType.ALL, max_results=1000, page_token=token)
        yield from page
        token = page.token
        if not token:
            return


def main(argv):
    from mlflow import MlflowClient

    retention = argv[1] if len(argv) > 1 else ""
    cutoff = int((time.time() - seconds(retention)) * 1000)
    client = MlflowClient()
    total = 0
    for experiment in experiments(client):
        deleted = client.delete_traces(experiment.experiment_id, max_timestamp_millis=cutoff) or 0
        if deleted:
            print(f"Deleted {deleted} traces older than {retention} from experiment {experiment.experiment_id}.")
        total += deleted
    print(f"Trace retention: {total} traces deleted.")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
