# -*- coding: utf-8 -*-
# Copyright (c) mlops.mlflow developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The backend and the artifact store are data: the files of the roles and playbooks whose code
names one, and the Python files whose code names a database backend, are exactly those the server
role's README lists under "Adding a backend".

Code is what Ansible evaluates: conditions (when, that, ...), Jinja expressions and tags, and the
keys of the YAML files. Prose is not: comments and the messages, names and descriptions, which
say what to set and so name the variables. In Python, code is the identifiers, the strings that
are exactly a backend's name or its modules' option (not the docs, messages or SQL), and the
options a doc fragment documents."""

from __future__ import annotations

import ast
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


# A database backend besides SQLite's files, in Python: PostgreSQL's name, option, helper and driver.
PY_IDENTIFIER = re.compile(r"postgres|psycopg", re.I)
PY_NAMES = {"postgres", "postgresql"}
DOC_NAMES = {"DOCUMENTATION", "EXAMPLES", "RETURN"}


def python_names_a_backend(path: Path) -> bool:
    tree = ast.parse(path.read_text())
    prose = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef)) and body and isinstance(body[0], ast.Expr):
            prose.add(id(body[0].value))
        if isinstance(node, ast.Assign) and any(getattr(target, "id", None) in DOC_NAMES for target in node.targets):
            prose.add(id(node.value))
            if path.parent.name == "doc_fragments" and getattr(node.targets[0], "id", None) == "DOCUMENTATION":
                options = (yaml.safe_load(node.value.value) or {}).get("options") or {}
                if PY_NAMES & set(options):
                    return True
    for node in ast.walk(tree):
        for attribute in ("id", "attr", "arg", "name", "asname", "module"):
            value = getattr(node, attribute, None)
            if isinstance(value, str) and PY_IDENTIFIER.search(value):
                return True
        if isinstance(node, ast.Constant) and node.value in PY_NAMES and id(node) not in prose:
            return True
    return False


def python_files():
    yield from sorted((ROOT / "plugins").rglob("*.py"))
    yield from sorted((ROOT / "roles").glob("*/files/*.py"))


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
    naming |= {path.relative_to(ROOT).as_posix() for path in python_files() if python_names_a_backend(path)}
    assert naming == listed_in_readme()


def test_adding_a_backend_touches_at_most_six_files():
    section = README.read_text().split("## Adding a backend", 1)[1].split("\n## ", 1)[0]
    table = section.split("| file |", 1)[1].split("\n\n", 1)[0]
    touched = [row for row in re.findall(r"^\| `[^`]+` \| (.*) \|$", table, re.M) if not row.startswith("nothing")]
    assert 0 < len(touched) <= 6, touched


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


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("from x.mlflow_postgres import Postgres\n", True),
        ("def f(db):\n    return db.facts() if db else backends(postgres=1)\n", True),
        ("KIND = {'postgresql': 1}\n", True),
        ("import psycopg\n", True),
        # Prose: docstrings, the module docs, messages and SQL.
        ('"""Reads PostgreSQL."""\nDOCUMENTATION = "postgres: x"\nMSG = f"PostgreSQL failed: {x}"\n', False),
        ("def f(db):\n    return db.NAME, 'SELECT 1 FROM pg_tables'\n", False),
    ],
)
def test_the_python_probe_tells_code_from_prose(tmp_path, text, names):
    path = tmp_path / "module.py"
    path.write_text(text)
    assert python_names_a_backend(path) is names


def test_the_python_probe_reads_the_options_a_doc_fragment_documents(tmp_path):
    fragments = tmp_path / "doc_fragments"
    fragments.mkdir()
    fragment = 'class D:\n    DOCUMENTATION = """\noptions:\n  {}\n"""\n'
    (fragments / "store.py").write_text(fragment.format("postgres:\n    type: dict"))
    (fragments / "other.py").write_text(fragment.format("s3:\n    description: not postgres"))
    assert python_names_a_backend(fragments / "store.py") is True
    assert python_names_a_backend(fragments / "other.py") is False
