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

import importlib.metadata
import importlib.util
import json
import os


def revisions(directory):
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
