#!/usr/bin/env python
# -*- coding: utf-8 -*-
# Copyright (c) mlops.mlflow developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""How soon does a playbook notice that MLflow is ready: mlflow_health versus uri + until.

Both playbooks wait with the same interval: mlops.mlflow.mlflow_health (wait_timeout, interval)
and the common ansible.builtin.uri on /health with until/retries/delay. Each trial launches
ansible-playbook against localhost, probing a port where nothing listens yet, then makes the
server appear on that port. A poller thread records when /health first answers OK and when the
API read (experiments/search) first succeeds. The figures are the seconds from those moments to
ansible-playbook exiting; a negative figure means the playbook called the server ready before
its API could answer.

Scenarios:
  start  a real `mlflow server` is started on the port (MLflow accepts connections ~2 s before it
         answers, so probes sent meanwhile queue and are answered the moment it is ready);
  open   one real, warm `mlflow server` runs elsewhere; a loopback forwarder starts listening on the
         port after a random delay (like a server whose port opens only once it is ready).
Methods alternate, so other load on the machine spreads over both.

Run: .venv/bin/python benchmarks/health_wait.py [--start-trials 3] [--open-trials 5] [--interval 1.0]
(every trial's figures: .cache/benchmarks/health_wait.json)
Needs mlflow and ansible-playbook beside this Python (or on PATH). Only 127.0.0.1 is used.
"""

import argparse
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
API_PATH = "/api/2.0/mlflow/experiments/search?max_results=1"

PLAYBOOKS = {
    "mlflow_health": """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Wait with mlops.mlflow.mlflow_health
      mlops.mlflow.mlflow_health:
        url: "{{ url }}"
        wait_timeout: 180
        interval: "{{ interval }}"
""",
    "uri + until": """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Wait with ansible.builtin.uri and until
      ansible.builtin.uri:
        url: "{{ url }}/health"
        return_content: true
      register: health
      until: health.status == 200 and health.content == 'OK'
      retries: "{{ (180 / (interval | float)) | int }}"
      delay: "{{ interval }}"
""",
}


def tool(name):
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def collections_path(workdir):
    """A directory holding ansible_collections/mlops/mlflow: given, the tree's own, or a symlink to it."""
    if os.environ.get("MLOPS_COLLECTIONS_PATH"):
        return os.environ["MLOPS_COLLECTIONS_PATH"]
    if REPO.parent.name == "mlops" and REPO.parent.parent.name == "ansible_collections":
        return str(REPO.parents[2])
    link = Path(workdir) / "collections" / "ansible_collections" / "mlops"
    link.mkdir(parents=True)
    (link / "mlflow").symlink_to(REPO)
    return str(Path(workdir) / "collections")


class MlflowServer:
    def __init__(self, port, workdir):
        store = Path(tempfile.mkdtemp(dir=workdir))
        self.process = subprocess.Popen(
            [tool("mlflow"), "server", "--backend-store-uri", "sqlite:///%s" % (store / "mlflow.db"),
             "--serve-artifacts", "--artifacts-destination", str(store / "mlruns"),
             "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip

    def stop(self):
        for signum in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.process.pid, signum)
                self.process.wait(timeout=30)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass


class Forwarder:
    """Listen on port and pipe every connection to target_port."""

    def __init__(self, port, target_port):
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", port))
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client = self.listener.accept()[0]
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pipe(src, dst):
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def stop(self):
        self.listener.close()


def poll_ready(url, stop, marks):
    """Record when /health first answers OK and when the API read first succeeds (long timeouts, like uri)."""
    for key, path in (("health", "/health"), ("api", API_PATH)):
        while not stop.is_set():
            try:
                with urllib.request.urlopen(url + path, timeout=60) as resp:
                    if resp.status == 200:
                        marks[key] = time.monotonic()
                        break
            except OSError:
                time.sleep(0.01)


def wait_ready(url, timeout=180):
    stop, marks = threading.Event(), {}
    deadline = time.monotonic() + timeout
    thread = threading.Thread(target=poll_ready, args=(url, stop, marks), daemon=True)
    thread.start()
    thread.join(timeout)
    stop.set()
    if "api" not in marks or time.monotonic() > deadline:
        raise SystemExit("mlflow server at %s did not become ready" % url)


def trial(method, playbook, scenario, args, workdir, env, warm_port):
    port = free_port()
    url = "http://127.0.0.1:%d" % port
    play = subprocess.Popen(
        [tool("ansible-playbook"), "-i", "localhost,", "-c", "local", playbook,
         "-e", "url=%s interval=%s ansible_python_interpreter=%s" % (url, args.interval, sys.executable)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=workdir,
    )  # fmt: skip
    if scenario == "open":
        # Let the playbook reach its waiting loop; a random extra delay opens the port at any phase of it.
        # (A starting mlflow server needs ~10 s before it listens, far longer than the playbook's start.)
        time.sleep(args.lead_time + random.uniform(0, 2 * args.interval))
    stop, marks = threading.Event(), {}
    poller = threading.Thread(target=poll_ready, args=(url, stop, marks), daemon=True)
    poller.start()
    server = MlflowServer(port, workdir) if scenario == "start" else Forwarder(port, warm_port)
    try:
        output = play.communicate(timeout=240)[0].decode(errors="replace")
        done = time.monotonic()
        poller.join(timeout=60)
        if play.returncode != 0 or len(marks) != 2:
            raise SystemExit("%s trial failed (rc %s):\n%s" % (method, play.returncode, output[-2000:]))
        return done - marks["health"], done - marks["api"]
    finally:
        stop.set()
        server.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--start-trials", type=int, default=3, help="trials per method, scenario start")
    parser.add_argument("--open-trials", type=int, default=5, help="trials per method, scenario open")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between probes, both methods")
    parser.add_argument("--lead-time", type=float, default=3.0, help="seconds the playbook polls before the port opens")
    raw = REPO / ".cache" / "benchmarks" / "health_wait.json"
    parser.add_argument("--json-out", type=Path, default=raw, help=f"every trial's figures (default: {raw})")
    args = parser.parse_args()
    started = time.monotonic()
    results = {}
    with tempfile.TemporaryDirectory(prefix="health-wait-") as workdir:
        env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections_path(workdir), ANSIBLE_NOCOLOR="1")
        env.pop("ANSIBLE_CONFIG", None)
        playbooks = {}
        for number, (method, text) in enumerate(PLAYBOOKS.items()):
            playbooks[method] = str(Path(workdir) / ("play%d.yml" % number))
            Path(playbooks[method]).write_text(text)
        warm_port = free_port()
        warm = MlflowServer(warm_port, workdir)
        try:
            wait_ready("http://127.0.0.1:%d" % warm_port)
            for scenario, trials in (("start", args.start_trials), ("open", args.open_trials)):
                for number in range(trials):
                    for method, playbook in playbooks.items():
                        figures = trial(method, playbook, scenario, args, workdir, env, warm_port)
                        results.setdefault((scenario, method), []).append(figures)
                        line = "%-5s trial %d  %-14s %6.2f s after /health OK, %6.2f s after API OK"
                        print(line % (scenario, number + 1, method, *figures), flush=True)
        finally:
            warm.stop()

    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    trials = [{"scenario": key[0], "method": key[1], "seconds": figures} for key, figures in results.items()]
    args.json_out.write_text(json.dumps(trials, indent=1))
    print()
    print("Seconds until ansible-playbook exits, interval %.1f s (median, min..max)" % args.interval)
    print("%-8s %-14s %6s %22s %22s" % ("scenario", "method", "trials", "after /health OK", "after API read OK"))
    for (scenario, method), figures in results.items():
        cells = []
        for column in zip(*figures, strict=True):
            cells.append("%6.2f (%5.2f..%5.2f)" % (statistics.median(column), min(column), max(column)))
        print("%-8s %-14s %6d %22s %22s" % (scenario, method, len(figures), cells[0], cells[1]))
    print("total benchmark time %.0f s" % (time.monotonic() - started))


if __name__ == "__main__":
    main()
