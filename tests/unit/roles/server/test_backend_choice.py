# -*- coding: utf-8 -*-
# Copyright (c) mlops.mlflow developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The backend and the artifact store are data: the files of the roles and playbooks whose code
names one are exactly those the server role's README lists under "Adding a backend".

Code is what Ansible evaluates: conditions (when, that, ...), Jinja expressions and tags, and the
keys of the YAML files. Prose is not: comments and the messages, names and descriptions, which
say what to set and so name the variables."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[4]
README = ROOT / "roles" / "server" / "README.md"

# The choice's variables (not the internal __mlflow_server_backend...), or a backend's name as a literal.
CHOICE = re.compile(r"(?<!\w)mlflow_server_(backend|artifacts)(?!\w)|['\"](sqlite|postgresql)['\"]")
# The data files' dictionaries, one per choice.
DATA_KEY = re.compile(r"^__mlflow_server_(backend|artifacts)_[a-z0-9]+$")
JINJA = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.S)
JINJA_COMMENT = re.compile(r"\{#.*?#\}", re.S)
PROSE_KEYS = {"msg", "fail_msg", "success_msg", "name", "description", "short_description", "notes"}
EXPRESSION_KEYS = {"when", "that", "failed_when", "changed_when", "until"}


def code_fragments(node, key=None):
    """The strings of a loaded YAML document that Ansible evaluates, keys included."""
    if isinstance(node, dict):
        for child_key, value in node.items():
            yield str(child_key)
            if child_key not in PROSE_KEYS:
                yield from code_fragments(value, child_key)
    elif isinstance(node, list):
        for item in node:
            yield from code_fragments(item, key)
    elif isinstance(node, str):
        yield from ([node] if key in EXPRESSION_KEYS else JINJA.findall(node))


def names_a_choice(path: Path) -> bool:
    text = path.read_text()
    if path.suffix == ".j2":
        fragments = JINJA.findall(JINJA_COMMENT.sub("", text))
    else:
        fragments = [fragment for document in yaml.safe_load_all(text) for fragment in code_fragments(document)]
    return any(CHOICE.search(fragment) or DATA_KEY.match(fragment) for fragment in fragments)


def role_and_playbook_files():
    for path in sorted((ROOT / "roles").rglob("*")) + sorted((ROOT / "playbooks").rglob("*.yml")):
        if path.is_file() and path.suffix in {".yml", ".yaml", ".j2"}:
            yield path
    yield ROOT / "site.yml"


def listed_in_readme():
    """The paths of the README's "Adding a backend" table, with <name> expanded over the files that exist."""
    section = README.read_text().split("## Adding a backend", 1)[1].split("\n## ", 1)[0]
    table = section.split("| file |", 1)[1].split("\n\n", 1)[0]
    listed = set()
    for pattern in re.findall(r"^\| `([^`]+)` \|", table, re.M):
        matches = sorted(ROOT.glob(pattern.replace("<name>", "*")))
        assert matches, f"the README lists {pattern}, which matches no file"
        listed.update(path.relative_to(ROOT).as_posix() for path in matches)
    return listed


def test_the_files_that_name_a_backend_are_the_ones_the_readme_lists():
    naming = {path.relative_to(ROOT).as_posix() for path in role_and_playbook_files() if names_a_choice(path)}
    assert naming == listed_in_readme()


def test_each_choice_has_its_data_file_with_the_same_keys():
    data = ROOT / "roles" / "server" / "vars" / "main"
    specs = yaml.safe_load((ROOT / "roles" / "server" / "meta" / "argument_specs.yml").read_text())
    options = specs["argument_specs"]["main"]["options"]
    for kind, option in (("backend", "mlflow_server_backend"), ("artifacts", "mlflow_server_artifacts")):
        keys = {}
        for choice in options[option]["choices"]:
            loaded = yaml.safe_load((data / f"{kind}_{choice}.yml").read_text())
            keys[choice] = set(loaded[f"__mlflow_server_{kind}_{choice}"])
            assert loaded[f"__mlflow_server_{kind}_{choice}"]["name"] == choice
        assert len({frozenset(k) for k in keys.values()}) == 1, keys


@pytest.mark.parametrize(
    ("text", "suffix", "names"),
    [
        ("- name: x\n  when: mlflow_server_backend == 'sqlite'\n", ".yml", True),
        ("- x:\n    a: \"{{ 'postgresql' if y else z }}\"\n", ".yml", True),
        ("mlflow_server_artifacts: local\n", ".yml", True),
        ("__mlflow_server_backend_mysql: {name: mysql}\n", ".yml", True),
        ("{% if mlflow_server_artifacts == 's3' %}x{% endif %}\n", ".j2", True),
        # Prose and the data's keys are not a choice.
        (
            "- name: Check mlflow_server_backend\n  fail: {msg: 'mlflow_server_backend: postgresql needs psycopg'}\n",
            ".yml",
            False,
        ),
        ("# mlflow_server_backend: sqlite\n- when: __mlflow_server_backend.files\n", ".yml", False),
        ("{# mlflow_server_backend #}{{ __mlflow_server_backend.uri }} sqlite\n", ".j2", False),
    ],
)
def test_the_probe_tells_code_from_prose(tmp_path, text, suffix, names):
    path = tmp_path / f"file{suffix}"
    path.write_text(text)
    assert names_a_choice(path) is names
