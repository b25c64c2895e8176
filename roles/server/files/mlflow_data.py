"""Back up, verify and count an MLflow SQLite store; run inside an MLflow image.

The server role runs this with `python -c` in a one-off container of the MLflow
image (which has Python's sqlite3 but no sqlite3 CLI), with the store mounted at
/mlflow and the backup directory at /backups. The last line of output is JSON.

  backup --store DIR --dest DIR --label NAME   online snapshot + artifacts + manifest
  verify --backup DIR                          manifest, checksums, integrity, schema vs this image
  counts --store DIR                           live counts, to compare with a manifest
"""

import argparse
import datetime
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import sqlite3
import sys

MANIFEST = "manifest.json"
DB = "mlflow.db"
ARTIFACTS = "mlruns"
COMPOSE = "docker-compose.yml"
FORMAT = 1


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def table_exists(conn, name):
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (name,)).fetchone() is not None


def db_facts(conn):
    """Schema revision and row counts; an empty database (never served) has none."""
    revision = None
    if table_exists(conn, "alembic_version"):
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        revision = row[0] if row else None
    counts = {}
    for table in ("experiments", "runs", "metrics"):
        # Table names come from the tuple above, never from input.
        counts[table] = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] if table_exists(conn, table) else 0  # noqa: S608
    return revision, counts


def count_files(root):
    return sum(len(files) for _directory, _subdirs, files in os.walk(root)) if os.path.isdir(root) else 0


def mlflow_version():
    return importlib.metadata.version("mlflow")


def backup(args):
    final = args.dest
    partial = final + ".partial"
    if os.path.exists(final):
        raise SystemExit(f"backup folder {final} exists already")
    shutil.rmtree(partial, ignore_errors=True)
    os.makedirs(partial, mode=0o700)
    try:
        # SQLite's online backup: a consistent copy even while the server writes.
        source = sqlite3.connect(os.path.join(args.store, DB), timeout=60)
        target = sqlite3.connect(os.path.join(partial, DB))
        with target:
            source.backup(target)
        source.close()
        integrity = [row[0] for row in target.execute("PRAGMA integrity_check").fetchall()]
        revision, counts = db_facts(target)
        target.close()
        if integrity != ["ok"]:
            raise SystemExit(f"integrity_check of the copy failed: {integrity[:5]}")
        # After the database, so every artifact a backed-up run refers to is there.
        source_artifacts = os.path.join(args.store, ARTIFACTS)
        if os.path.isdir(source_artifacts):
            shutil.copytree(source_artifacts, os.path.join(partial, ARTIFACTS), symlinks=True)
        else:
            os.makedirs(os.path.join(partial, ARTIFACTS))
        if os.path.isfile(os.path.join(args.store, COMPOSE)):
            shutil.copy2(os.path.join(args.store, COMPOSE), os.path.join(partial, COMPOSE))
        counts["artifacts"] = count_files(os.path.join(partial, ARTIFACTS))
        files = {}
        for directory, _subdirs, names in os.walk(partial):
            for name in sorted(names):
                path = os.path.join(directory, name)
                files[os.path.relpath(path, partial)] = {"sha256": sha256(path), "size": os.path.getsize(path)}
        manifest = {
            "format": FORMAT,
            "created": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "label": args.label,
            "backend": "sqlite",
            "mlflow_version": mlflow_version(),
            "schema_revision": revision,
            "integrity_check": "ok",
            "counts": counts,
            "bytes": sum(entry["size"] for entry in files.values()),
            "files": files,
        }
        with open(os.path.join(partial, MANIFEST), "w") as handle:
            json.dump(manifest, handle, indent=1, sort_keys=True)
        # Only a finished backup carries its final name.
        os.rename(partial, final)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    summary = {key: value for key, value in manifest.items() if key != "files"}
    summary["path"] = final
    return summary


def known_revisions():
    """The image's migration scripts: every revision it knows and its head."""
    from alembic.script import ScriptDirectory

    package = importlib.util.find_spec("mlflow").submodule_search_locations[0]
    script = ScriptDirectory(os.path.join(package, "store", "db_migrations"))
    return {rev.revision for rev in script.walk_revisions()}, script.get_current_head()


def verify(args):
    """Problems are reported, not raised, so the playbook can name the variable."""
    result = {"ok": False, "image_version": mlflow_version(), "problems": []}
    problems = result["problems"]
    path = os.path.join(args.backup, MANIFEST)
    try:
        with open(path) as handle:
            manifest = json.load(handle)
        files = manifest["files"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        problems.append(f"has no readable {MANIFEST} ({error})")
        return result
    result.update({key: value for key, value in manifest.items() if key != "files"})
    for name, entry in sorted(files.items()):
        file_path = os.path.join(args.backup, name)
        if not os.path.isfile(file_path):
            problems.append(f"misses {name}")
        elif sha256(file_path) != entry["sha256"]:
            problems.append(f"has a changed {name} (sha256 differs from the manifest)")
    if DB not in files:
        problems.append(f"has no {DB} in its manifest")
    if problems:
        return result
    conn = sqlite3.connect(f"file:{os.path.join(args.backup, DB)}?mode=ro&immutable=1", uri=True)
    integrity = [row[0] for row in conn.execute("PRAGMA integrity_check").fetchall()]
    revision = db_facts(conn)[0]
    conn.close()
    if integrity != ["ok"]:
        problems.append(f"fails integrity_check: {integrity[:3]}")
    known, head = known_revisions()
    result.update({"image_head": head, "schema_known": revision is None or revision in known})
    result["needs_upgrade"] = revision is not None and revision != head
    if not result["schema_known"]:
        problems.append(
            f"holds schema revision {revision} written by MLflow {manifest.get('mlflow_version')}, "
            f"newer than MLflow {result['image_version']} knows (its newest is {head})"
        )
    result["ok"] = not problems
    return result


def counts(args):
    path = os.path.join(args.store, DB)
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=60)
    revision, found = db_facts(conn)
    conn.close()
    found["artifacts"] = count_files(os.path.join(args.store, ARTIFACTS))
    return {"schema_revision": revision, "counts": found, "mlflow_version": mlflow_version()}


def main(argv):
    parser = argparse.ArgumentParser(prog="mlflow_data")
    commands = parser.add_subparsers(dest="command", required=True)
    backup_parser = commands.add_parser("backup")
    backup_parser.add_argument("--store", required=True)
    backup_parser.add_argument("--dest", required=True)
    backup_parser.add_argument("--label", default="manual")
    commands.add_parser("verify").add_argument("--backup", required=True)
    commands.add_parser("counts").add_argument("--store", required=True)
    args = parser.parse_args(argv)
    action = {"backup": backup, "verify": verify, "counts": counts}[args.command]
    print(json.dumps(action(args), sort_keys=True))


if __name__ == "__main__":
    main(sys.argv[1:])
