"""The server role's metrics as an admin's monitoring sees them: a real node_exporter (Debian's
prometheus-node-exporter, installed in the target as an admin would) reading the role's textfile
folder, and a real Prometheus (Debian's prometheus binary, which scripts/test.sh unpacks into the
venv) on the controller that scrapes it over the network.

Import it from a scenario's tests:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))
    from node_exporter import Prometheus, install, series

    install(host)                       # once per target; waits until it answers
    series(host)["mlflow_health_up"]    # what node_exporter serves now
    with Prometheus(host) as prometheus:
        prometheus.query("mlflow_http_request_total")
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

from mlflow_client import wait_for

PORT = 9100
SCRAPE = (
    'python3 -c "import urllib.request; '
    f"print(urllib.request.urlopen('http://127.0.0.1:{PORT}/metrics', timeout=5).read().decode())\""
)


def install(host):
    """Debian's prometheus-node-exporter in the target (started by its package), answering."""
    host.check_output(
        "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus-node-exporter"
        " >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive"
        " apt-get install -y -qq --no-install-recommends prometheus-node-exporter >/dev/null)"
    )
    assert wait_for(lambda: host.run(SCRAPE).rc == 0, 60), f"node_exporter does not answer on 127.0.0.1:{PORT}"
    return host


def run_metrics(host):
    """One run of the role's metrics unit that starts now. The timer starts the oneshot unit too, and a
    start while a run is under way only waits for that run, which may have read the state before the
    test changed it: the second start is a run of its own. systemd refuses a sixth start within 10 s
    (StartLimitBurst), which a test that polls the metrics reaches on a quick host: reset-failed
    clears that count first. A run that fails still fails the start."""
    host.check_output(
        "systemctl reset-failed mlflow-metrics.service && systemctl start mlflow-metrics.service"
        " && systemctl start mlflow-metrics.service"
    )


def series(host, prefixes=("mlflow_", "node_textfile_")):
    """The samples node_exporter serves now whose names start with one of prefixes: {name{labels}: value}."""
    found = {}
    for line in host.check_output(SCRAPE).splitlines():
        if line.startswith(prefixes):
            name, value = line.rsplit(" ", 1)
            found[name] = float(value)
    return found


def address(host):
    """The target's address on its Docker network, as the controller reaches it."""
    name = host.backend.get_hostname()
    shown = subprocess.run(
        ["docker", "inspect", "--format", "{{json .NetworkSettings.Networks}}", name],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    addresses = [network["IPAddress"] for network in json.loads(shown.stdout).values() if network["IPAddress"]]
    assert addresses, f"{name} has no address on a Docker network"
    return addresses[0]


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Prometheus:
    """A real Prometheus on the controller that scrapes the target's node_exporter every second."""

    def __init__(self, host):
        self.target = f"{address(host)}:{PORT}"
        binary = shutil.which(
            "prometheus", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])
        )
        assert binary, (
            "prometheus is missing: scripts/test.sh unpacks it from Debian's prometheus package into .venv/bin"
        )
        self.binary = binary
        self.port = free_port()
        self.directory = None
        self.process = None

    def __enter__(self):
        self.directory = tempfile.mkdtemp(prefix="prometheus-")
        config = Path(self.directory) / "prometheus.yml"
        config.write_text(
            json.dumps(
                {
                    "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
                    "scrape_configs": [{"job_name": "node", "static_configs": [{"targets": [self.target]}]}],
                }
            )
        )
        self.log = Path(self.directory) / "prometheus.log"
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(  # pylint: disable=consider-using-with
                [
                    self.binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={self.directory}/data",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        assert wait_for(lambda: self.up() == 1, 60), f"Prometheus does not scrape {self.target}:\n{self.tail()}"
        return self

    def __exit__(self, *exc):
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        shutil.rmtree(self.directory, ignore_errors=True)

    def tail(self):
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-20:])

    def query(self, expression):
        """The instant query's result: [{metric: {labels}, value: float}]."""
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode({"query": expression})
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                data = json.load(answer)["data"]["result"]
        except OSError:
            return []
        return [{"metric": item["metric"], "value": float(item["value"][1])} for item in data]

    def up(self):
        found = self.query(f'up{{instance="{self.target}"}}')
        return found[0]["value"] if found else None

    def wait(self, expression, condition=bool, timeout=30):
        """The query's result once condition(result) holds, or fail with what Prometheus had."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.query(expression)
            if condition(result) or time.monotonic() > deadline:
                assert condition(result), f"{expression}: {result}\n{self.tail()}"
                return result
            time.sleep(0.5)
