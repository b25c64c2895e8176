"""Run the users' playbooks from a scenario's tests, the way the README writes them.

`run_playbook(host, "site.yml", extra)` runs `ansible-playbook playbooks/site.yml -i <inventory>`
from the repo root with only PATH and an empty HOME (nothing Molecule set, no copy of the
collection under ~/.ansible) plus a JSON report to read the results from.

Import it from a scenario's conftest.py:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))
    from playbook import PlaybookRun, readme_env, run_playbook
"""

import json
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[3]


@dataclass
class PlaybookRun:
    rc: int
    report: dict
    host: str
    stderr: str
    stdout: str = ""

    def results(self):
        for play in self.report.get("plays", []):
            for task in play["tasks"]:
                outcome = task["hosts"].get(self.host)
                if outcome is None:
                    continue
                items = outcome.get("results")
                for item in items if isinstance(items, list) else [outcome]:
                    yield task["task"]["name"], item

    @property
    def failures(self):
        return [str(result.get("msg")) for _task, result in self.results() if result.get("failed")]

    @property
    def messages(self):
        return [str(result["msg"]) for _task, result in self.results() if "msg" in result]

    @property
    def warnings(self):
        return [str(w) for _task, result in self.results() for w in result.get("warnings", [])]

    def ran(self, task_name):
        """Whether a task of that name ran (not skipped) for the host."""
        # Role tasks are named "<role> : <task>" in the report.
        return any(name.split(" : ")[-1] == task_name and not result.get("skipped") for name, result in self.results())

    @property
    def changed(self):
        return self.report["stats"][self.host]["changed"]


def readme_env(home):
    """The environment a user's shell gives a README command: PATH and an empty HOME, nothing
    Molecule set (its ANSIBLE_* variables, its copy of the collection under ~/.ansible)."""
    return {"PATH": os.environ["PATH"], "HOME": str(home), "LANG": "C.UTF-8"}


def run_playbook(host, playbook, extra=None, check=False, limit=True):
    """ansible-playbook playbooks/<playbook> -i <inventory> from the repo root, as the README
    writes it, with only the output format added (a JSON report to read the results from)."""
    name = host.backend.get_hostname()
    with tempfile.TemporaryDirectory() as home:
        extra_file = Path(home) / "extra.json"
        extra_file.write_text(json.dumps(extra or {}))
        command = ["ansible-playbook", f"playbooks/{playbook}", "-i", os.environ["MOLECULE_INVENTORY_FILE"]]
        command += (["--limit", name] if limit else []) + ["-e", f"@{extra_file}"] + (["--check"] if check else [])
        env = {**readme_env(home), "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json", "ANSIBLE_NOCOLOR": "1"}
        result = subprocess.run(
            command, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False, env=env, cwd=PROJECT
        )
    assert result.stdout.startswith("{"), result.stdout[:500] + result.stderr[-1500:]
    return PlaybookRun(result.returncode, json.loads(result.stdout), name, result.stderr, result.stdout)
