# Copyright (c) mlops.mlflow developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Delete the traces older than a retention, in every experiment (deleted ones too) of every
workspace, through the MLflow server (MLFLOW_TRACKING_URI, and the admin's login with
authentication on). mlflow gc collects no traces. Run by mlflow-gc.service after gc, inside the
MLflow container, on its stdin:

    docker exec -i mlflow-server python - 30d < /usr/local/lib/mlflow-traces.py

Each trace's data files go first (MLflow's delete removes the rows only), then its rows. Prints one
line per experiment it trimmed, then "Trace retention: N traces deleted."; exits 1 when some
trace's files could not be deleted. SQLite gives the freed pages back to the filesystem only after
a VACUUM (playbooks/compact.yml); until then MLflow reuses them."""

import re
import sys
import time
import warnings

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


def expired(client, experiment_id, cutoff):
    """The experiment's traces that started before cutoff (ms), without their spans."""
    found, token = [], None
    while True:
        # experiment_ids: the name MLflow 2 knows; MLflow 3 calls it locations and warns.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            page = client.search_traces(
                experiment_ids=[experiment_id],
                filter_string=f"trace.timestamp_ms < {cutoff}",
                max_results=100,
                page_token=token,
                include_spans=False,
            )
        found += list(page)
        token = page.token
        if not token:
            return found


def trace_id(trace):
    """MLflow 3's trace_id, MLflow 2's request_id."""
    return getattr(trace.info, "trace_id", None) or trace.info.request_id


def drop_artifacts(trace):
    """Delete the trace's data files (traces.json) in the artifact store, through the server: MLflow
    deletes a trace's rows only, and its files would stay. False when that failed."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    location = trace.info.tags.get("mlflow.artifactLocation")
    if not location:
        return True
    try:
        get_artifact_repository(location).delete_artifacts()
    except Exception as error:  # a missing folder, a refused delete: say so and go on
        print(f"Could not delete the files of trace {trace_id(trace)} at {location}: {error}")
        return False
    return True


def workspaces():
    """The names of every workspace when MLflow runs with them; else [None] (MLflow 2 has none, and
    MLflow 3 without them refuses the list)."""
    import mlflow

    try:
        names = [workspace.name for workspace in mlflow.list_workspaces()]
    except Exception:  # no workspaces on this server, or no such call in this MLflow
        return [None]
    return names or [None]


def trim(client, experiment, cutoff, retention):
    """Delete the experiment's expired traces, files first. Returns (deleted, files that failed)."""
    traces = expired(client, experiment.experiment_id, cutoff)
    failed = sum(1 for trace in traces if not drop_artifacts(trace))
    ids = [trace_id(trace) for trace in traces]
    deleted = 0
    for start in range(0, len(ids), 100):
        # By position: MLflow 3 names the ids trace_ids, MLflow 2 request_ids.
        deleted += client.delete_traces(experiment.experiment_id, None, None, ids[start : start + 100]) or 0
    if deleted:
        print(f"Deleted {deleted} traces older than {retention} from experiment {experiment.experiment_id}.")
    return deleted, failed


def main(argv):
    import mlflow
    from mlflow import MlflowClient

    retention = argv[1] if len(argv) > 1 else ""
    cutoff = int((time.time() - seconds(retention)) * 1000)
    client = MlflowClient()
    total = failed = 0
    for workspace in workspaces():
        if workspace:
            mlflow.set_workspace(workspace)
        for experiment in list(experiments(client)):
            deleted, unfiled = trim(client, experiment, cutoff, retention)
            total, failed = total + deleted, failed + unfiled
    print(f"Trace retention: {total} traces deleted.")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
