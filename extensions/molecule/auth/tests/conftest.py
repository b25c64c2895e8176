"""Helpers for the auth tests: commands on the members' PC as ann or ben, the real mlflow
client there through their own tunnels, MLflow's API on the server, and the users' playbooks.

The test files run in name order on one server, each from the state the previous one left:
MLflow 2.22.1 with authentication after converge, 3.17.2 from test_4 on."""

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))
# The test files import these from here.
from playbook import PROJECT, run_playbook  # noqa: F401  # pylint: disable=unused-import

PC = "mlflow-auth-pc"
STORE = "/opt/mlflow"
BACKUPS = "/var/backups/mlflow"
ADMIN = "admin"
FIRST_ADMIN_PASSWORD = "first-Admin-secret-7"
SECOND_ADMIN_PASSWORD = "second-Admin-secret-8"
PORTS = {"ann": 5001, "ben": 5002, "cat": 5003}
# What every run asks for from test_4's upgrade on (the inventory still says 2.22.1).
UPGRADED = {
    "mlflow_server_image": "mlops/mlflow:3.17.2-full",
    "mlflow_server_image_archive": "",
    "mlflow_server_allowed_hosts": ["localhost:*", "127.0.0.1:*"],
    "mlflow_server_auth_admin_password": SECOND_ADMIN_PASSWORD,
}
LOGS = PROJECT / ".cache" / "logs"
# Every HTTP answer the tests saw: (who, action, status), for the closing note's table.
MATRIX = LOGS / "auth-matrix.json"


def on_pc(user, command, env=None, check=True):
    """A shell command on the members' PC as that member (their HOME, their files)."""
    argv = ["docker", "exec", "-u", user, "-w", f"/home/{user}"]
    for name, value in (env or {}).items():
        argv += ["-e", f"{name}={value}"]
    result = subprocess.run([*argv, PC, "sh", "-c", command], capture_output=True, text=True, check=False)
    if check:
        assert result.returncode == 0, f"{command}: {result.stdout[-2000:]}{result.stderr[-2000:]}"
    return result


class Tunnel:
    """The member's own alias, opened with plain ssh -fN and closed with ssh -O exit."""

    def __init__(self, user):
        self.user = user

    def __enter__(self):
        on_pc(self.user, "ssh -o BatchMode=yes mlflowauth -fN")
        return self

    def __exit__(self, *exc):
        on_pc(self.user, "ssh -O exit mlflowauth", check=False)


MLFLOW = """
import json, sys, mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
action, *args = sys.argv[1:]
client = MlflowClient()
def answer(call):
    try:
        value = call()
        print(json.dumps({"status": 200, "value": value}))
    except MlflowException as error:
        print(json.dumps({"status": error.get_http_status_code(), "error": str(error)[:300]}))
if action == "log":
    def log():
        experiment = mlflow.set_experiment(args[0]).experiment_id
        with mlflow.start_run(experiment_id=experiment) as run:
            mlflow.log_param("who", args[1])
            mlflow.log_metric("loss", 0.5)
        return {"run_id": run.info.run_id, "experiment_id": experiment}
    answer(log)
elif action == "read":
    answer(lambda: client.get_run(args[0]).data.params)
elif action == "write":
    answer(lambda: client.log_metric(args[0], "intruder", 1.0))
elif action == "create":
    answer(lambda: client.create_experiment(args[0]))
elif action == "search":
    answer(lambda: sorted(e.name for e in client.search_experiments()))
elif action == "doomed":
    def doomed():
        import os, tempfile
        experiment = mlflow.set_experiment(args[0]).experiment_id
        with mlflow.start_run(experiment_id=experiment) as run, tempfile.TemporaryDirectory() as scratch:
            path = os.path.join(scratch, "doomed.txt")
            with open(path, "w") as stream:
                stream.write("for gc to collect")
            mlflow.log_artifact(path)
        client.delete_run(run.info.run_id)
        return {"run_id": run.info.run_id, "experiment_id": experiment}
    answer(doomed)
elif action == "history":
    def history():
        import os, tempfile
        experiment = mlflow.set_experiment(args[0]).experiment_id
        for number in range(2):
            with mlflow.start_run(experiment_id=experiment), tempfile.TemporaryDirectory() as scratch:
                os.makedirs(os.path.join(scratch, "plots"))
                for name in ("model.bin", "plots/loss.txt"):
                    with open(os.path.join(scratch, name), "wb") as stream:
                        stream.write(os.urandom(4096))
                mlflow.log_artifacts(scratch)
        return {"experiment_id": experiment}
    answer(history)
elif action == "fetch":
    def fetch():
        import hashlib, os, tempfile
        experiment = client.get_experiment_by_name(args[0])
        if experiment is None:
            from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST
            raise MlflowException(f"no experiment {args[0]}", error_code=RESOURCE_DOES_NOT_EXIST)
        sums = {}
        for run in client.search_runs([experiment.experiment_id]):
            with tempfile.TemporaryDirectory() as scratch:
                root = client.download_artifacts(run.info.run_id, "", scratch)
                for folder, _dirs, files in os.walk(root):
                    for name in files:
                        path = os.path.join(folder, name)
                        with open(path, "rb") as stream:
                            where = os.path.relpath(path, root)
                            key = f"{experiment.experiment_id}/{run.info.run_id}/artifacts/{where}"
                            sums[key] = hashlib.sha256(stream.read()).hexdigest()
        return sums
    answer(fetch)
"""


def mlflow_as(user, action, *args, workspace=None, profile=False):
    """The real mlflow client on the PC as the member, through their tunnel, with only
    MLFLOW_TRACKING_URI set: the login comes from their ~/.mlflow/credentials. profile: first read
    their ~/.profile as a login shell does (the MLFLOW_WORKSPACE onboarding exports); workspace:
    MLFLOW_WORKSPACE given for this one process, as a member switches groups."""
    env = {"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{PORTS[user]}", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}
    quoted = " ".join(f"'{arg}'" for arg in (action, *args))
    command = f"python - {quoted} <<'EOF'\n{MLFLOW}\nEOF"
    if workspace:
        command = f"MLFLOW_WORKSPACE={workspace} {command}"
    if profile:
        command = f". ./.profile && {command}"
    result = on_pc(user, command, env=env)
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    where = f" [{workspace or ('profile' if profile else 'default')}]" if workspace or profile else ""
    record(user, f"{action} {' '.join(args)}{where}".strip(), answer["status"])
    return answer


def api(host, path, user=None, password=None, method="GET", body=None, workspace=None):
    """MLflow's API from the server itself (127.0.0.1:500); returns (status, parsed body)."""
    script = f"""
import base64, json, urllib.request, urllib.error
data = {json.dumps(body).encode() if body is not None else None!r}
headers = {{"Host": "localhost:500", **({{"Content-Type": "application/json"}} if data else {{}})}}
if {workspace!r}:
    headers["X-MLFLOW-WORKSPACE"] = {workspace!r}
request = urllib.request.Request("http://127.0.0.1:500{path}", method={method!r}, data=data, headers=headers)
if {user!r}:
    request.add_header("Authorization", "Basic " + base64.b64encode(({user!r} + ":" + {password!r}).encode()).decode())
try:
    with urllib.request.urlopen(request, timeout=30) as answer:
        status, text = answer.status, answer.read().decode()
except urllib.error.HTTPError as error:
    status, text = error.code, error.read().decode()
print(json.dumps({{"status": status, "text": text[:2000]}}))
"""
    encoded = base64.b64encode(script.encode()).decode()
    result = json.loads(host.check_output(f"python3 -c \"import base64; exec(base64.b64decode('{encoded}'))\""))
    try:
        parsed = json.loads(result["text"])
    except ValueError:
        parsed = result["text"]
    return result["status"], parsed


def run_rows(host, run_id):
    """How many rows of that run the server's mlflow.db holds (read-only): 0 once gc purged it."""
    query = f"SELECT count(*) FROM runs WHERE run_uuid = '{run_id}'"
    database = f"sqlite3.connect('file:{STORE}/db/mlflow.db?mode=ro', uri=True)"
    script = f"import sqlite3; print({database}.execute({query!r}).fetchone()[0])"
    return host.check_output(f"python3 -c {json.dumps(script)}").strip()


def record(who, action, status):
    LOGS.mkdir(parents=True, exist_ok=True)
    rows = json.loads(MATRIX.read_text()) if MATRIX.exists() else []
    rows.append([who, action, status])
    MATRIX.write_text(json.dumps(rows, indent=0))


@pytest.fixture(scope="session", autouse=True)
def fresh_matrix():
    """The table of this run only."""
    MATRIX.unlink(missing_ok=True)


@pytest.fixture(scope="session")
def ledger():
    """What the tests logged and must find again after rotation, restore and upgrade."""
    return {}
