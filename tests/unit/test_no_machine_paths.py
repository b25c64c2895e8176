"""No file of the collection carries a path of the machine it was made on: a work tree, a
scratch home or temporary directory, a pyenv, the controller's own home. Such a line tells a
reader nothing and leaks how one machine was laid out. Paths inside the test targets
(/opt/mlflow, /root/.ssh or /home/alice in a container) are fine and are not matched.

The files are those git would commit: tracked, and untracked but not ignored."""

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

MACHINE_PATHS = {
    # A directory under /work (a file there, such as a container's /work/mlflow.pgdump, is fine).
    "a work tree under /work": r"(?<![\w.~-])/work/[\w-]+(?=/|[\s`'\",;:)]|$)",
    "a work tree named wt": r"/wt/[\w.-]+",
    "a pyenv": r"\.pyenv/",
    "the controller's home (pyenv, caches, tools)": r"/root/\.(?:pyenv|cache|local|config)\b",
    "a scratch home or temporary directory": r"/tmp/(?:home-|bash_jobs|pytest-of-|tmp[a-z0-9_]{8}\b)",
}
PATTERN = re.compile("|".join(f"(?P<p{number}>{regex})" for number, regex in enumerate(MACHINE_PATHS.values())))


def committed_files():
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    return [name.decode() for name in listed if name]


def machine_paths(name, text):
    """file:line: what, for each line of text that carries a machine path."""
    reasons = list(MACHINE_PATHS)
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        for match in PATTERN.finditer(line):
            what = reasons[int(match.lastgroup[1:])]
            found.append(f"{name}:{number}: {what}: {match.group(0)!r} in {line.strip()[:160]!r}")
    return found


def test_the_patterns_tell_machine_paths_from_paths_in_the_targets():
    machine = [
        "cd /work/wt/bench2",
        "export HOME=/tmp/home-bench PATH=/work/main/.venv/bin:$PATH",
        "CONFIG_FILE() = /work/wt-docs/ansible.cfg",
        "cd /work/wt-docs && ansible-galaxy collection build",
        "a clone in `/work/main`",
        "python: /root/.pyenv/versions/3.11.7/bin/python",
        "Install mlflow-tunnel in /root/.local/bin",
        "see /tmp/pytest-of-root/pytest-3/test_x0",
    ]
    targets = [
        "mlflow_server_store_dir: /opt/mlflow",
        "install -d -m 0700 /root/.ssh && cat >> /root/.ssh/authorized_keys",
        "host.file('/home/alice/.ssh/config')",
        'assert f"{tmp_path}:/work:rw" in argv',
        '["pg_restore", "--list", "/work/mlflow.pgdump"]',
        "WITNESS = '/tmp/mlflow-injected'",
        "dest: /var/tmp/mlflow-image.tar",
    ]
    assert [line for line in machine if not machine_paths("x", line)] == []
    assert [line for line in targets if machine_paths("x", line)] == []


def test_no_committed_file_carries_a_machine_path():
    found = []
    for name in committed_files():
        path = ROOT / name
        # This file names the patterns it looks for.
        if path == Path(__file__).resolve() or path.is_symlink() or not path.is_file():
            continue
        data = path.read_bytes()
        if b"\0" in data:
            continue
        found += machine_paths(name, data.decode("utf-8", errors="replace"))
    assert found == [], "machine paths in committed files:\n" + "\n".join(found)
