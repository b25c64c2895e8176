"""Print which database schema revisions this MLflow image knows, as one line of JSON.

The server role runs it once per image ID, in a one-off container of the image with this
file mounted read-only, and keeps the answer on the host. With it the role tells, from the
data alone, whether a database needs `mlflow db upgrade` before this image may serve it,
or was written by a newer MLflow than the image knows.

  {"version": "3.17.2", "tracking": {"head": ..., "known": [...]}, "auth": {"head": ..., "known": [...]}}
"""

import importlib.metadata
import importlib.util
import json
import os


def revisions(directory):
    from alembic.script import ScriptDirectory

    script = ScriptDirectory(directory)
    return {"head": script.get_current_head(), "known": sorted(rev.revision for rev in script.walk_revisions())}


def main():
    package = importlib.util.find_spec("mlflow").submodule_search_locations[0]
    result = {
        "version": importlib.metadata.version("mlflow"),
        "tracking": revisions(os.path.join(package, "store", "db_migrations")),
    }
    auth = os.path.join(package, "server", "auth", "db", "migrations")
    # MLflow's basic-auth app keeps its own schema (table alembic_version_auth).
    result["auth"] = revisions(auth) if os.path.isdir(os.path.join(auth, "versions")) else None
    print(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    main()
