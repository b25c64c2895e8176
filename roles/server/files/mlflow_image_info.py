"""Print what this MLflow image knows and has, as one line of JSON.

The server role runs it once per image ID, in a one-off container of the image with this
file mounted read-only, and keeps the answer on the host. With it the role tells, from the
data alone, whether a database needs `mlflow db upgrade` before this image may serve it, or
was written by a newer MLflow than the image knows; and whether the image has the Python
packages that authentication (Flask-WTF), PostgreSQL (psycopg), S3 (boto3) and MLflow's own
/metrics (prometheus-flask-exporter) need.

  {"version": "3.17.2", "tracking": {"head": ..., "known": [...]}, "auth": {"head": ..., "known": [...]},
   "extras": {"auth": true, "postgresql": true, "s3": true, "metrics": true}}
"""

import ast
import importlib.metadata
import importlib.util
import json
import os

# The assignments of a migration script that place it in Alembic's graph.
GRAPH_NAMES = ("revision", "down_revision", "branch_labels", "depends_on")


def revisions(directory):
    """The head and every revision of an Alembic directory, read from its scripts' text.

    Alembic imports every script to read these (each imports SQLAlchemy and MLflow: about two
    seconds in MLflow 3's image). Where the text holds only literal values, one line of history
    and one head, they are the same; anything else is Alembic's to answer."""
    versions = os.path.join(directory, "versions")
    graph = {}
    for name in sorted(os.listdir(versions)):
        # Alembic's own choice of files: *.py, not __init__.py or an editor's .# file.
        if not name.endswith(".py") or name.startswith(("__init__", ".#")):
            continue
        with open(os.path.join(versions, name), encoding="utf-8") as handle:
            values = literal_assignments(ast.parse(handle.read()))
        if (
            values is None
            or not isinstance(values.get("revision"), str)
            or values.get("branch_labels")
            or values.get("depends_on")
        ):
            return alembic_revisions(directory)
        down = values.get("down_revision")
        graph[values["revision"]] = (down,) if isinstance(down, str) else tuple(down or ())
    parents = {parent for downs in graph.values() for parent in downs}
    heads = [revision for revision in graph if revision not in parents]
    if len(heads) != 1 or not parents <= graph.keys():
        return alembic_revisions(directory)
    return {"head": heads[0], "known": sorted(graph)}


def literal_assignments(tree):
    """{name: value} of the module-level assignments to GRAPH_NAMES, or None if one is not a literal."""
    values = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, value = node.target, node.value
        else:
            continue
        if isinstance(target, ast.Name) and target.id in GRAPH_NAMES:
            try:
                values[target.id] = ast.literal_eval(value)
            except (ValueError, TypeError):
                return None
    return values


def alembic_revisions(directory):
    from alembic.script import ScriptDirectory

    script = ScriptDirectory(directory)
    return {"head": script.get_current_head(), "known": sorted(rev.revision for rev in script.walk_revisions())}


def has(*modules):
    return all(importlib.util.find_spec(module) is not None for module in modules)


def main():
    package = importlib.util.find_spec("mlflow").submodule_search_locations[0]
    auth = os.path.join(package, "server", "auth", "db", "migrations")
    result = {
        "version": importlib.metadata.version("mlflow"),
        "tracking": revisions(os.path.join(package, "store", "db_migrations")),
        # MLflow's basic-auth app keeps its own schema (table alembic_version_auth).
        "auth": revisions(auth) if os.path.isdir(os.path.join(auth, "versions")) else None,
        # MLflow 3 with SQLAlchemy 2.1 takes psycopg (v3); MLflow 2 psycopg2.
        "extras": {
            "auth": has("flask_wtf"),
            "postgresql": has("psycopg") or has("psycopg2"),
            "s3": has("boto3"),
            "metrics": has("prometheus_flask_exporter"),
        },
    }
    print(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    main()
