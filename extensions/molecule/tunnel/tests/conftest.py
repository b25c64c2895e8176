"""The controller side of the tunnel scenario: a member's files and real ssh tunnels.

prepare.yml fills $MOLECULE_EPHEMERAL_DIRECTORY/client (the member's stand-in home);
the aliases, users and paths below are the ones molecule.yml and converge.yml give."""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

CLIENT = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "client"
CONFIG = CLIENT / ".ssh" / "config"
KEY = CLIENT / ".ssh" / "id_ed25519"
ALIAS, ALIAS_B = "mlflowtunnel", "mlflowtunnel-b"
SHELL_ALIAS_B = "mlflowtunnel-b-shell"
# mlflow-tunnel as the role installed it (molecule.yml puts it beside the stand-in home).
HELPER = CLIENT / "bin" / "mlflow-tunnel"
SERVER_USER = "alice"
# The account of the second alias: a member with a login (access: shell).
SHELL_USER = "sam"
STORE = "/opt/mlflow"


def ports():
    """The two local ports prepare picked: ALIAS's, then ALIAS_B's."""
    return [int(p) for p in (CLIENT / "local_ports").read_text().split()]


def server_address():
    return (CLIENT / "server_address").read_text().strip()


def ssh(*args, timeout=60):
    """Run the real ssh client with the generated config; BatchMode so a prompt fails instead of hanging."""
    return subprocess.run(
        ["ssh", "-F", str(CONFIG), "-o", "BatchMode=yes", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def port_is_free(port):
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


def raw_get(port, path="/health", host_header=None, headers="", timeout=20):
    """The raw HTTP/1.0 answer of whatever listens on 127.0.0.1:`port` (b"" when it closes at once)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
        host_header = host_header or f"127.0.0.1:{port}"
        conn.sendall(f"GET {path} HTTP/1.0\r\nHost: {host_header}\r\n{headers}\r\n".encode())
        received = b""
        try:
            while chunk := conn.recv(4096):
                received += chunk
        except OSError:
            pass
    return received


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return check()


def mlflow_tunnel(*args, helper=HELPER, config=CONFIG):
    """The member's `mlflow-tunnel ...`, with the scenario's ssh config; stdin closed, so a prompt fails."""
    return subprocess.run(
        [str(helper), *args],
        env=dict(os.environ, MLFLOW_TUNNEL_SSH_CONFIG=str(config)),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


# Every short_dir of the session, removed at its end.
SHORT_DIRS = []


def short_dir(prefix):
    """A directory with a short path, for control sockets (ssh's limit); removed at the end of the
    session at the latest."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    SHORT_DIRS.append(path)
    return path


@pytest.fixture(scope="session", autouse=True)
def remove_short_dirs():
    yield
    for path in SHORT_DIRS:
        shutil.rmtree(path, ignore_errors=True)


def run_client_role(extra_vars, *flags):
    """ansible-playbook [flags] client.yml with extra vars (client_host: where; default the controller)."""
    playbook = Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"]) / "client.yml"
    inventory = Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent
    return subprocess.run(
        ["ansible-playbook", *flags, "-i", str(inventory), str(playbook), "-e", json.dumps(extra_vars)],
        # Closed: an ssh started earlier in the session may leave the shared stdin non-blocking,
        # which ansible-playbook refuses.
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )


def strip_blocks(text, aliases):
    """The config without the role's marked blocks for these aliases."""
    kept, skipping = [], False
    for line in text.splitlines(keepends=True):
        if any(line == f"# BEGIN mlops.mlflow.client Host {a}\n" for a in aliases):
            skipping = True
        elif skipping and any(line.startswith(f"# END mlops.mlflow.client Host {a}") for a in aliases):
            skipping = False
        elif not skipping:
            kept.append(line)
    return "".join(kept)


LOG_RUN = """
import json, sys, uuid, mlflow
artifact = sys.argv[1]
mlflow.set_experiment("tunnel-verify")
with mlflow.start_run() as run:
    mlflow.log_params({"optimizer": "adam", "learning_rate": "0.01"})
    for step in range(3):
        mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
    mlflow.log_artifact(artifact)
print(json.dumps({"run_id": run.info.run_id, "tracking_uri": mlflow.get_tracking_uri()}))
"""

READ_RUN = """
import json, sqlite3, sys
db = sqlite3.connect("file:{store}/db/mlflow.db?mode=ro", uri=True)
run = sys.argv[1]
print(json.dumps({{
    "params": sorted(db.execute("SELECT key, value FROM params WHERE run_uuid = ?", (run,)).fetchall()),
    "metrics": db.execute("SELECT key, value, step FROM metrics WHERE run_uuid = ? ORDER BY step", (run,)).fetchall(),
}}))
"""


def assert_run_lands_on_the_server(host, port, tmp_path):
    """Log a run with the real mlflow client through the tunnel on local `port`; find it in the server's store."""
    artifact = tmp_path / "notes.txt"
    artifact.write_text(f"sent through the tunnel on port {port}\n")
    env = dict(os.environ, MLFLOW_TRACKING_URI=f"http://127.0.0.1:{port}", MLFLOW_HTTP_REQUEST_MAX_RETRIES="2")
    logged = subprocess.run(
        [sys.executable, "-c", LOG_RUN, str(artifact)], env=env, capture_output=True, text=True, check=False
    )
    assert logged.returncode == 0, logged.stderr
    run = json.loads(logged.stdout.splitlines()[-1])
    assert run["tracking_uri"] == f"http://127.0.0.1:{port}"

    stored = json.loads(host.check_output(f"python3 -c '{READ_RUN.format(store=STORE)}' {run['run_id']}"))
    assert stored["params"] == [["learning_rate", "0.01"], ["optimizer", "adam"]]
    assert stored["metrics"] == [["loss", 1.0, 0], ["loss", 0.5, 1], ["loss", 1.0 / 3, 2]]
    found = host.check_output(f"find {STORE}/mlruns -path '*{run['run_id']}*' -name notes.txt")
    assert found, "the artifact is not under mlruns/ on the server"
    assert host.file(found.splitlines()[0]).content_string == artifact.read_text()


class Tunnel:
    """`ssh -F <config> <alias> -fN`, with a control socket so exactly this tunnel is closed again.

    cleanup.yml closes any socket a failed test left behind."""

    def __init__(self, alias):
        self.alias = alias
        self.socket = CLIENT / "tunnels" / f"{alias}.sock"

    def open(self, *options):
        self.socket.parent.mkdir(exist_ok=True)
        return ssh(*options, "-o", "ControlMaster=yes", "-o", f"ControlPath={self.socket}", self.alias, "-fN")

    def close(self):
        if self.socket.exists():
            ssh("-o", f"ControlPath={self.socket}", "-O", "exit", self.alias)
        for _attempt in range(50):
            if not self.socket.exists():
                return
            time.sleep(0.1)


@pytest.fixture
def tunnel():
    """Open a real tunnel for an alias (extra ssh options may follow); closed when the test ends."""
    opened = []

    def _open(alias, *options):
        t = Tunnel(alias)
        result = t.open(*options)
        opened.append(t)
        assert result.returncode == 0, f"ssh {alias} -fN failed: {result.stderr}"
        return t

    yield _open
    for t in opened:
        t.close()


def pytest_configure(config):
    config.addinivalue_line("markers", "reboots_target: restarts the target container; runs after every other test")


def pytest_collection_modifyitems(items):
    """Reboot the target last: Docker may hand a restarted container another bridge address,
    and the member's ssh config written at converge names the old one."""
    items.sort(key=lambda item: item.get_closest_marker("reboots_target") is not None)
