#!/usr/bin/env python
# -*- coding: utf-8 -*-
# Copyright (c) mlops.mlflow developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Shared by the performance benchmarks (converge.py, writers.py, workers_sweep.py, onboard.py, data_safety.py,
auth.py); not run by itself.

A throwaway Debian 13 target container (a Molecule target: extensions/molecule/shared) that
plays the lab server: sshd runs in it and takes a generated root key, so Ansible reaches it
with its ssh connection (not docker exec), as it reaches a real server. Before any timing,
the server role's own docker.yml installs Docker and Compose into it, and the MLflow image is
loaded into its engine (docker save | docker load), so "image present" holds for every run.

The manual recipe (RECIPE) is the seed's hand-made deployment, sent over one ssh session.
"""

import json
import os
import resource
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "extensions" / "molecule" / "shared"))
from target_args import target_args, target_command  # noqa: E402

BIN = Path(sys.executable).parent
IMAGE_TAG = "3.17.2"
IMAGE = f"mlops/mlflow:{IMAGE_TAG}"
IMAGE_ARCHIVE = REPO / f".cache/images/mlflow-{IMAGE_TAG}.tar"
# The role's defaults (roles/server/defaults/main.yml) and its Compose project (name: mlflow).
STORE = "/opt/mlflow"
# The recipe's own directory and Compose project, so the two never share files.
RECIPE_STORE = "/opt/mlflow-recipe"
RECIPE_PROJECT = "mlflow-recipe"
# What the role learned about each image (roles/server/vars/main.yml __mlflow_server_cache_dir); removed by
# reset(), so a cold run is a first deployment on the host, the one-off image inquiry included.
IMAGE_CACHE = "/var/cache/mlops-mlflow"
# Every script's raw measurements (--json-out) go here by default: git ignores .cache/, and the
# reports the scripts print are what benchmarks/RESULTS-*.md keep.
RAW_DIR = REPO / ".cache" / "benchmarks"

SETUP = """
- name: Install Docker with the server role's own tasks (not timed)
  hosts: mlflow_servers
  tasks:
    - name: Install Docker and Compose v2
      ansible.builtin.include_role: {name: mlops.mlflow.server, tasks_from: docker}
"""

# The seed's manual recipe, run by `bash -s` over ONE ssh session. MLflow's default
# workers (4), SQLite backend, served artifacts, published on the host's loopback.
# The poll is a single python3 process probing every 0.2 s: a lower bound for any hand-made wait.
RECIPE = r"""set -e
D=%(store)s
mkdir -p "$D"
touch "$D/mlflow.db" && chmod 0666 "$D/mlflow.db"
mkdir -p "$D/mlruns" && chmod 0777 "$D/mlruns"
cat > "$D/docker-compose.yml" <<'EOF'
services:
  mlflow:
    image: %(image)s
    restart: unless-stopped
    command: ["mlflow", "server", "--backend-store-uri", "sqlite:////mlflow/mlflow.db",
              "--serve-artifacts", "--artifacts-destination", "/mlflow/mlruns",
              "--host", "0.0.0.0", "--port", "5000"]
    ports: ["127.0.0.1:%(port)s:5000"]
    volumes: ["%(store)s:/mlflow"]
EOF
cd "$D" && docker compose -p %(project)s up -d --quiet-pull 2>/dev/null
python3 - <<'EOF'
import time, urllib.request
deadline = time.monotonic() + 180
while True:
    try:
        with urllib.request.urlopen("http://127.0.0.1:%(port)s/health", timeout=2) as answer:
            if answer.status == 200 and answer.read().strip() == b"OK":
                break
    except OSError:
        pass
    if time.monotonic() > deadline:
        raise SystemExit("MLflow did not answer healthy")
    time.sleep(0.2)
EOF
"""

# The same steps for a Compose file the role rendered (captured from the target after a converge).
STORE_UP = r"""set -e
D=%(store)s
install -d -m 0700 "$D" "$D/secrets"
install -d -m 0777 "$D/db" "$D/mlruns"
touch "$D/db/mlflow.db" && chmod 0666 "$D/db/mlflow.db"
# The key files the role's Compose file mounts (keys.yml makes them; Compose never creates one).
python3 -c 'import base64, os, secrets, sys
for name, value in (("kek_passphrase", secrets.token_urlsafe(48)), ("kek_version", "1"),
                    ("webhook_key", base64.urlsafe_b64encode(os.urandom(32)).decode())):
    with open(os.path.join(sys.argv[1], name), "w") as handle:
        handle.write(value)' "$D/secrets"
cat > "$D/docker-compose.yml" <<'EOF'
%(compose)s
EOF
cd "$D" && docker compose up -d --quiet-pull 2>/dev/null
python3 - <<'EOF'
import time, urllib.request
deadline = time.monotonic() + 180
while True:
    try:
        with urllib.request.urlopen("http://127.0.0.1:500/health", timeout=2) as answer:
            if answer.status == 200 and answer.read().strip() == b"OK":
                break
    except OSError:
        pass
    if time.monotonic() > deadline:
        raise SystemExit("MLflow did not answer healthy")
    time.sleep(0.2)
EOF
"""

RESET = f"""
for d in {STORE} {RECIPE_STORE}; do
  if [ -f "$d/docker-compose.yml" ]; then
    (cd "$d" && docker compose down --remove-orphans -t 5 >/dev/null 2>&1) || true
  fi
done
docker rm -f mlflow-server >/dev/null 2>&1 || true
rm -rf {STORE} {RECIPE_STORE} {IMAGE_CACHE}
"""


def sh(*command, stdin=None, check=True, timeout=None, cwd=None, env=None):
    result = subprocess.run(
        command, capture_output=True, text=True, input=stdin, check=False, timeout=timeout, cwd=cwd, env=env
    )
    if check and result.returncode != 0:
        raise SystemExit(
            f"{' '.join(map(str, command))[:300]} failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
        )
    return result


def stats(values):
    """(median, min, max) of a list of numbers."""
    return statistics.median(values), min(values), max(values)


def fmt(values, digits=1):
    """'median (min..max)' of a list of numbers."""
    if not values:
        return "-"
    med, low, high = stats(values)
    if len(values) == 1:
        return f"{med:.{digits}f}"
    return f"{med:.{digits}f} ({low:.{digits}f}..{high:.{digits}f})"


def md_table(headers, rows):
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _dummy in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def json_out_option(parser, name):
    """--json-out, by default .cache/benchmarks/<name>.json (made here)."""
    RAW_DIR.mkdir(parents=True, exist_ok=True)
    default = RAW_DIR / f"{name}.json"
    parser.add_argument("--json-out", type=Path, default=default, help=f"every measurement (default: {default})")


def log(*parts):
    print(time.strftime("%H:%M:%S"), *parts, file=sys.stderr, flush=True)


class Target:
    """One throwaway lab server: start(), then ssh(), playbook(), reset(); remove() at the end."""

    def __init__(self, name, workdir=None):
        self.name = name
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix=f"{name}-"))
        self.key = self.workdir / "id_ed25519"
        self.known_hosts = self.workdir / "known_hosts"
        self.address = ""

    # --- the container -------------------------------------------------------------------
    def load_image(self, archive):
        """docker save archive | docker load in the target's engine (about 25 s for 1 GB); not timed."""
        with open(archive, "rb") as handle:
            subprocess.run(
                ["docker", "exec", "-i", self.name, "docker", "load", "-q"],
                stdin=handle,
                capture_output=True,
                check=True,
            )

    def start(self):
        """The Debian 13 Molecule platform with sshd, Docker and the MLflow image; not timed."""
        self.remove()
        config = yaml.safe_load((REPO / "extensions/molecule/config.yml").read_text())
        image = next(p for p in config["platforms"] if p["name"] == "debian13")["image"]
        command = ["docker", "run", "-d", "--name", self.name, "--hostname", self.name, *target_args()]
        sh(*command, image, target_command())
        for _attempt in range(120):
            state = self.exec("systemctl is-system-running", check=False).stdout.strip()
            if state in ("running", "degraded"):
                break
            time.sleep(1)
        else:
            raise SystemExit(f"{self.name} did not finish booting")
        self.address = sh(
            "docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", self.name
        ).stdout.strip()
        if not self.key.exists():
            sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"bench@{self.name}", "-f", str(self.key))
        public = (self.workdir / "id_ed25519.pub").read_text()
        self.exec(
            "install -d -m 0700 /root/.ssh && cat >> /root/.ssh/authorized_keys"
            " && chmod 0600 /root/.ssh/authorized_keys && systemctl enable --now ssh",
            stdin=public,
        )
        self.known_hosts.unlink(missing_ok=True)
        for _attempt in range(30):
            if self.ssh("true", check=False).returncode == 0:
                break
            time.sleep(1)
        else:
            raise SystemExit(f"no ssh to root@{self.address}")
        log(f"{self.name} up at {self.address}; installing Docker with the role's docker.yml")
        setup = self.workdir / "setup.yml"
        setup.write_text(SETUP)
        result = self.playbook(setup)
        if result["rc"] != 0:
            raise SystemExit(f"Docker setup failed:\n{result['stdout'][-3000:]}\n{result['stderr'][-2000:]}")
        log(f"loading {IMAGE} into the target's engine")
        self.load_image(IMAGE_ARCHIVE)
        self.exec(f"docker image inspect {IMAGE} >/dev/null")

    def remove(self):
        subprocess.run(["docker", "rm", "-f", "-v", self.name], capture_output=True, check=False)

    def exec(self, command, stdin=None, check=True):
        """A shell command in the target through docker exec: setup and resets only, never timed."""
        return sh("docker", "exec", "-i", self.name, "sh", "-c", command, stdin=stdin, check=check)

    def reset(self):
        """Both stacks down, both store directories and the role's image cache gone (what a cold run starts from)."""
        self.exec(RESET)

    def wait_docker_healthy(self, name="mlflow-server", timeout=120):
        """Wait, untimed, until Docker's own health check says the container is healthy."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.exec(f"docker inspect -f '{{{{.State.Health.Status}}}}' {name}", check=False).stdout.strip()
            if status == "healthy":
                return
            time.sleep(1)
        raise SystemExit(f"{name} did not turn healthy in {timeout} s")

    def container_id(self, name="mlflow-server"):
        """The full id of a container of the target's inner engine (its cgroup is /docker/<id> on this host)."""
        return self.exec(f"docker inspect -f '{{{{.Id}}}}' {name}").stdout.strip()

    def container_id_on_host(self):
        """The target container's own full id on this host."""
        return sh("docker", "inspect", "-f", "{{.Id}}", self.name).stdout.strip()

    # --- ssh -----------------------------------------------------------------------------
    def ssh_options(self):
        return [
            "-i",
            str(self.key),
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            f"UserKnownHostsFile={self.known_hosts}",
            "-o",
            "StrictHostKeyChecking=accept-new",
        ]

    def ssh(self, command, stdin=None, check=True, timeout=300):
        return sh(
            "ssh", *self.ssh_options(), f"root@{self.address}", command, stdin=stdin, check=check, timeout=timeout
        )

    def recipe(self, port=5000):
        """The manual recipe over one ssh session; returns its wall time in seconds."""
        script = RECIPE % {"store": RECIPE_STORE, "image": IMAGE, "project": RECIPE_PROJECT, "port": port}
        started = time.monotonic()
        self.ssh("bash -s", stdin=script)
        return time.monotonic() - started

    def start_compose(self, compose_text):
        """The role's store layout (store.yml: dir, db/mlflow.db 0666, mlruns/ 0777, keys.yml's files) and a
        Compose file the role rendered, brought up over one ssh session and polled like the recipe; returns seconds."""
        script = STORE_UP % {"store": STORE, "compose": compose_text}
        started = time.monotonic()
        self.ssh("bash -s", stdin=script)
        return time.monotonic() - started

    def tunnel(self, local_port, remote_port=500):
        """A member's tunnel: `ssh -N -L 127.0.0.1:<local_port>:127.0.0.1:<remote_port>` (a Popen);
        the role's port by default."""
        process = subprocess.Popen(
            [
                "ssh",
                *self.ssh_options(),
                "-o",
                "ExitOnForwardFailure=yes",
                "-o",
                "ServerAliveInterval=30",
                "-N",
                "-L",
                f"127.0.0.1:{local_port}:127.0.0.1:{remote_port}",
                f"root@{self.address}",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for _attempt in range(100):
            if process.poll() is not None:
                raise SystemExit(f"the tunnel exited: {process.stderr.read().decode()[-500:]}")
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", local_port)) == 0:
                    return process
            time.sleep(0.1)
        process.kill()
        raise SystemExit("the tunnel did not open")

    # --- Ansible -------------------------------------------------------------------------
    def inventory(self, server_vars=None, all_vars=None):
        """A YAML inventory: the target in mlflow_servers (ssh as root), the controller in mlflow_clients."""
        inventory = {
            "all": {
                "vars": {"mlflow_server_image": IMAGE, "mlflow_server_image_archive": "", **(all_vars or {})},
                "children": {
                    "mlflow_servers": {
                        "hosts": {
                            self.name: {
                                "ansible_host": self.address,
                                "ansible_user": "root",
                                "ansible_ssh_private_key_file": str(self.key),
                                "ansible_ssh_common_args": (
                                    f"-o UserKnownHostsFile={self.known_hosts} -o StrictHostKeyChecking=accept-new"
                                ),
                                **(server_vars or {}),
                            }
                        }
                    },
                    "mlflow_clients": {
                        "hosts": {
                            "localhost": {
                                "ansible_connection": "local",
                                "ansible_python_interpreter": str(BIN / "python"),
                            }
                        }
                    },
                },
            }
        }
        path = self.workdir / "inventory.yml"
        path.write_text(yaml.safe_dump(inventory))
        return path

    def playbook(self, path, extra_vars=None, env=None, inventory=None):
        """ansible-playbook from the repo root (so the repo's ansible.cfg applies), json stdout callback.

        Each run gets a fresh ssh ControlPath directory, so no control master of an earlier run
        (ControlPersist) makes it faster; its masters are closed after the run.
        Returns rc, seconds, the json callback's document (or None), stdout and stderr."""
        inventory = inventory or self.inventory()
        control_dir = Path(tempfile.mkdtemp(prefix="cp-", dir=self.workdir))
        environment = {
            **os.environ,
            "ANSIBLE_COLLECTIONS_PATH": str(REPO / "collections"),
            "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
            "ANSIBLE_SSH_CONTROL_PATH_DIR": str(control_dir),
            "ANSIBLE_NOCOLOR": "1",
            "PATH": f"{BIN}:{os.environ['PATH']}",
            **(env or {}),
        }
        command = [str(BIN / "ansible-playbook"), "-i", str(inventory), str(path)]
        if extra_vars:
            variables = self.workdir / "extra_vars.json"
            variables.write_text(json.dumps(extra_vars))
            command += ["-e", f"@{variables}"]
        started, used = time.monotonic(), resource.getrusage(resource.RUSAGE_CHILDREN)
        result = subprocess.run(command, capture_output=True, text=True, env=environment, cwd=REPO, check=False)
        elapsed = time.monotonic() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        # CPU of ansible-playbook and every process it waited for: its workers and the modules it ran
        # on this controller (connection local), not what ran on the target.
        cpu = (after.ru_utime - used.ru_utime) + (after.ru_stime - used.ru_stime)
        for socket_path in control_dir.iterdir():
            subprocess.run(
                ["ssh", "-o", f"ControlPath={socket_path}", "-O", "exit", "x"], capture_output=True, check=False
            )
        shutil.rmtree(control_dir, ignore_errors=True)
        try:
            document = json.loads(result.stdout)
        except json.JSONDecodeError:
            document = None
        return {
            "rc": result.returncode,
            "seconds": elapsed,
            "cpu_s": cpu,
            "json": document,
            "stdout": result.stdout,
            "stderr": result.stderr,
        }


# Actions that run on the controller only: no module is sent to the host.
CONTROLLER_ONLY = {
    "ansible.builtin.assert",
    "assert",
    "ansible.builtin.debug",
    "debug",
    "ansible.builtin.set_fact",
    "set_fact",
    "ansible.builtin.include_tasks",
    "include_tasks",
    "ansible.builtin.include_role",
    "include_role",
    "ansible.builtin.import_tasks",
    "ansible.builtin.meta",
    "meta",
    "ansible.builtin.fail",
    "fail",
    "ansible.builtin.validate_argument_spec",
    "validate_argument_spec",
}


def task_rows(document):
    """One row per (task, host) result: play, task name, action, seconds, changed, skipped, host."""
    rows = []
    for play in document.get("plays", []):
        for task in play.get("tasks", []):
            duration = task["task"].get("duration", {})
            seconds = 0.0
            if duration.get("start") and duration.get("end"):
                seconds = _seconds(duration["end"]) - _seconds(duration["start"])
            for host, result in task.get("hosts", {}).items():
                rows.append(
                    {
                        "play": play["play"]["name"],
                        "task": task["task"]["name"],
                        "action": result.get("action", ""),
                        "seconds": seconds,
                        "changed": bool(result.get("changed")),
                        "skipped": bool(result.get("skipped")),
                        "host": host,
                    }
                )
    return rows


def _seconds(stamp):
    # The json callback writes ISO 8601 UTC stamps such as 2026-11-26T06:50:01.123456Z.
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def recap(document):
    """{host: {ok, changed, failures, unreachable, skipped, ...}} from the json callback."""
    return document.get("stats", {}) if document else {}


def counts(document):
    """Tasks that ran (not skipped) and those that sent a module to a host (or ran one locally),
    in total and per host."""
    rows = [row for row in task_rows(document) if not row["skipped"]]
    modules = [row for row in rows if row["action"] not in CONTROLLER_ONLY]
    per_host = {}
    for row in modules:
        per_host[row["host"]] = per_host.get(row["host"], 0) + 1
    return {
        "tasks_run": len(rows),
        "module_runs": len(modules),
        "module_runs_per_host": per_host,
        "skipped": len(task_rows(document)) - len(rows),
    }


def quote(text):
    return shlex.quote(str(text))


def free_port():
    """A local port the kernel says is free now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def cgroup_value(controller, container_id, name):
    """A number from this host's cgroup v1 file of a container (the target's inner containers are
    siblings of the target under /docker, because the target runs with cgroupns host)."""
    path = Path("/sys/fs/cgroup") / controller / "docker" / container_id / name
    try:
        text = path.read_text()
    except OSError:
        return None
    if name == "memory.stat":
        return {key: int(value) for key, value in (line.split() for line in text.splitlines())}
    return int(text.split()[0])


def host_cpu_busy():
    """(busy, total) jiffies of this host from /proc/stat."""
    fields = [int(value) for value in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def process_cpu_seconds(pid):
    """utime + stime of a process in seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
