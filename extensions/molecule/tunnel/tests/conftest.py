"""The controller side of the tunnel scenario: a member's files and real ssh tunnels.

prepare.yml fills $MOLECULE_EPHEMERAL_DIRECTORY/client (the member's stand-in home);
the aliases, users and paths below are the ones molecule.yml and converge.yml give."""

import json
import os
import socket
import subprocess
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


def short_dir(prefix):
    """A directory with a short path, for control sockets (ssh's limit); removed by the caller."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


def run_client_role(extra_vars, *flags):
    """ansible-playbook [flags] client.yml with extra vars (client_host: where; default the controller)."""
    playbook = Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"]) / "client.yml"
    inventory = Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent
    return subprocess.run(
        ["ansible-playbook", *flags, "-i", str(inventory), str(playbook), "-e", json.dumps(extra_vars)],
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


class Tunnel:
    """`ssh -F <config> <alias> -fN`, with a control socket so exactly this tunnel is closed again.

    cleanup.yml closes any socket a failed test left behind."""

    def __init__(self, alias):
        self.alias = alias
        self.socket = CLIENT / "tunnels" / f"{alias}.sock"

    def open(self):
        self.socket.parent.mkdir(exist_ok=True)
        return ssh("-o", "ControlMaster=yes", "-o", f"ControlPath={self.socket}", self.alias, "-fN")

    def close(self):
        if self.socket.exists():
            ssh("-o", f"ControlPath={self.socket}", "-O", "exit", self.alias)
        for _attempt in range(50):
            if not self.socket.exists():
                return
            time.sleep(0.1)


@pytest.fixture
def tunnel():
    """Open a real tunnel for an alias; closed when the test ends."""
    opened = []

    def _open(alias):
        t = Tunnel(alias)
        result = t.open()
        opened.append(t)
        assert result.returncode == 0, f"ssh {alias} -fN failed: {result.stderr}"
        return t

    yield _open
    for t in opened:
        t.close()
