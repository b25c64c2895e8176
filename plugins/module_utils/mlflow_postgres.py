# -*- coding: utf-8 -*-
# Copyright (c) mlops.mlflow developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""MLflow's PostgreSQL database, reached through one-off containers of the PostgreSQL image.

The host has no PostgreSQL client, and a managed database is reachable only on the Compose
project's network. So every step runs `docker run --rm` of the configured PostgreSQL image on
that network (or the host's, for an external database), with the role's root-only pgpass file
mounted read-only and PGPASSFILE set: no password on any command line or in the environment.

A backup dumps with `pg_dump --format=custom --snapshot=<exported snapshot>` from inside a
psql session that holds a REPEATABLE READ transaction open, and counts the rows in that same
transaction: the manifest's counts are exactly what the dump holds, while MLflow keeps writing.

`run(argv, data=None) -> (rc, stdout, stderr)` runs a command (AnsibleModule.run_command in the
modules, a fake in the unit tests).
"""

from __future__ import annotations

import re

DUMP = "mlflow.pgdump"
TRACKING_TABLES = ("experiments", "runs", "metrics", "params", "tags")
AUTH_TABLES = ("users", "experiment_permissions", "registered_model_permissions")
# Inside the one-off container.
PGPASS_TARGET = "/run/mlflow-pgpass"
WORK = "/work"


class PostgresError(Exception):
    """A step against PostgreSQL failed; the message says which and why."""


def libpq_uri(uri):
    """SQLAlchemy's postgresql+driver:// URI as libpq takes it (postgresql://)."""
    return re.sub(r"^postgres(ql)?(\+[a-z0-9_]+)?://", "postgresql://", uri)


def _facts_query():
    """One statement, run inside the caller's transaction: schema revisions and row counts as k=v lines.

    query_to_xml runs each count only for a table that exists (a database MLflow never served has none)."""
    rows = [("revision:tracking", "alembic_version", "SELECT version_num AS v FROM alembic_version")]
    rows.append(("revision:auth", "alembic_version_auth", "SELECT version_num AS v FROM alembic_version_auth"))
    for table in TRACKING_TABLES + AUTH_TABLES:
        rows.append((f"count:{table}", table, f"SELECT count(*) AS v FROM {table}"))  # noqa: S608 - names from constants
    rows.append(("count:runs_active", "runs", "SELECT count(*) AS v FROM runs WHERE lifecycle_stage = ''active''"))
    values = ",\n  ".join(f"('{key}', '{table}', '{query}')" for key, table, query in rows)
    select = "SELECT k || '=' || coalesce((xpath('/row/v/text()', query_to_xml(q, false, true, '')))[1]::text, '')"
    return (
        f"{select}\nFROM (VALUES\n  {values}) AS x(k, t, q)\nWHERE to_regclass(t) IS NOT NULL\n"  # noqa: S608 - constants
        "UNION ALL SELECT 'tables=' || count(*) FROM pg_tables WHERE schemaname = 'public';\n"
    )


PSQL_HEAD = "\\set ON_ERROR_STOP on\n\\pset tuples_only on\n\\pset format unaligned\n"

# pg_dump runs from psql's shell escape while psql's transaction keeps the exported snapshot alive.
DUMP_SCRIPT = (
    PSQL_HEAD + "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY;\n"
    "SELECT pg_export_snapshot() AS mlflow_snapshot \\gset\n"
    "\\setenv MLFLOW_SNAPSHOT :mlflow_snapshot\n"
    f'\\! pg_dump --format=custom --snapshot="$MLFLOW_SNAPSHOT" --file={WORK}/{DUMP}.part "$MLFLOW_PG_URI"'
    f" && mv {WORK}/{DUMP}.part {WORK}/{DUMP}\n" + _facts_query() + "COMMIT;\n"
)
FACTS_SCRIPT = PSQL_HEAD + "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY;\n" + _facts_query() + "COMMIT;\n"


def parse_facts(text):
    """{schema_revision, counts, auth: {schema_revision, counts} or None, tables} from the k=v lines."""
    values = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep:
            values[key] = value
    counts = {table: int(values.get(f"count:{table}") or 0) for table in TRACKING_TABLES}
    counts["runs_active"] = int(values.get("count:runs_active") or 0)
    auth = None
    if values.get("revision:auth"):
        auth = {
            "schema_revision": values["revision:auth"],
            "counts": {table: int(values.get(f"count:{table}") or 0) for table in AUTH_TABLES},
        }
    return {
        "schema_revision": values.get("revision:tracking") or None,
        "counts": counts,
        "auth": auth,
        "tables": int(values.get("tables") or 0),
    }


class Postgres:
    """spec: image (PostgreSQL image with psql, pg_dump, pg_restore), network (a Docker network, or
    host), uri (the database, without a password) and pgpass_file (on the host, root-only)."""

    def __init__(self, spec, run):
        self.image = spec["image"]
        self.network = spec.get("network") or "host"
        self.uri = libpq_uri(spec["uri"])
        self.pgpass = spec["pgpass_file"]
        self.run = run

    def _argv(self, command, work=None, network=None, work_mode="rw"):
        argv = ["docker", "run", "--rm", "-i", "--network", network or self.network]
        argv += ["-v", f"{self.pgpass}:{PGPASS_TARGET}:ro", "-e", f"PGPASSFILE={PGPASS_TARGET}"]
        argv += ["-e", f"MLFLOW_PG_URI={self.uri}"]
        if work:
            argv += ["-v", f"{work}:{WORK}:{work_mode}"]
        return [*argv, self.image, *command]

    def _call(self, what, command, data=None, **kwargs):
        rc, out, err = self.run(self._argv(command, **kwargs), data=data)
        if rc != 0:
            raise PostgresError(f"{what} failed (rc {rc}): {(err or out).strip()[-800:]}")
        return out

    def _psql(self, what, script, **kwargs):
        return self._call(what, ["sh", "-c", 'exec psql -X -q "$MLFLOW_PG_URI" -f -'], data=script, **kwargs)

    def facts(self):
        """Schema revisions and counts, from one snapshot."""
        return parse_facts(self._psql("Reading the PostgreSQL database", FACTS_SCRIPT))

    def dump(self, dest_dir):
        """Write dest_dir/mlflow.pgdump; return the facts of the same snapshot."""
        out = self._psql("pg_dump of the PostgreSQL database", DUMP_SCRIPT, work=dest_dir)
        facts = parse_facts(out)
        problems = self.check_dump(dest_dir)
        if problems:
            raise PostgresError(f"pg_dump wrote no usable {DUMP}: {'; '.join(problems)}")
        return facts

    def check_dump(self, directory):
        """Problems with directory/mlflow.pgdump as pg_restore reads its table of contents; [] when fine."""
        argv = ["docker", "run", "--rm", "--network", "none", "-v", f"{directory}:{WORK}:ro", self.image]
        rc, out, err = self.run([*argv, "pg_restore", "--list", f"{WORK}/{DUMP}"], data=None)
        if rc != 0:
            return [f"has a {DUMP} that pg_restore cannot read: {(err or out).strip()[-300:]}"]
        if "TABLE DATA" not in out and "TABLE " not in out:
            return [f"has a {DUMP} that holds no tables"]
        return []

    def load(self, directory):
        """pg_restore directory/mlflow.pgdump into the database, which must hold no tables."""
        before = self.facts()
        if before["tables"]:
            raise PostgresError(
                f"the database {self.uri} already holds {before['tables']} tables; "
                "a restore loads only into an empty one"
            )
        restore = "exec pg_restore --no-owner --no-privileges --exit-on-error --single-transaction"
        self._call(
            "pg_restore into the PostgreSQL database",
            ["sh", "-c", f'{restore} -d "$MLFLOW_PG_URI" {WORK}/{DUMP}'],
            work=directory,
            work_mode="ro",
        )
        return self.facts()
