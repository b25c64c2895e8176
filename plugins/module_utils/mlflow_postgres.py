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

import os
import re

from ansible_collections.mlops.mlflow.plugins.module_utils._tables import AUTH_TABLES, TRACKING_TABLES

DUMP = "mlflow.pgdump"
# Inside the one-off container.
PGPASS_TARGET = "/run/mlflow-pgpass"
WORK = "/work"


# The suboptions of the modules' postgres option (Postgres.OPTIONS).
OPTIONS = {
    "image": {"type": "str", "required": True},
    "network": {"type": "str", "default": "host"},
    "uri": {"type": "str", "required": True},
    "pgpass_file": {"type": "path", "required": True},
}


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
    host), uri (the database, without a password) and pgpass_file (on the host, root-only).

    The interface of a database backend's helper (module_utils/_backends.py lists them): the class
    attributes below, and facts(), dump(), check_dump() and load()."""

    # mlflow_server_backend's value, as backups' manifests and mlflow_store_info record it.
    NAME = "postgresql"
    # The file of a backup that holds the database, and the manifest's integrity_check of it.
    DUMP = DUMP
    INTEGRITY = "pg_restore --list ok"
    # The managed service's data folder in the store, which a restore moves aside.
    DATA_DIR = "postgres"
    Error = PostgresError
    # The suboptions of the modules' option for it (_backends.py; documented in doc_fragments/mlflow_store.py).
    OPTIONS = OPTIONS

    @staticmethod
    def has_data(store_dir):
        """Whether the store's managed service folder holds a PostgreSQL cluster."""
        return os.path.isfile(os.path.join(store_dir, Postgres.DATA_DIR, "PG_VERSION"))

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


# The owner role of a managed database: made once and set to no superuser; the database, its public
# schema and every table, view, sequence and type in it are given to it (clusters of releases before
# 0.5.0 had the superuser own them; PostgreSQL 16+ cannot take SUPERUSER from the bootstrap
# superuser). A NOTICE starting "changed:" says that something moved. The password comes in the psql
# variable owner_password, set before this script on standard input.
OWNER_SCRIPT = """\\set ON_ERROR_STOP on
DO $$
DECLARE
  statement text;
  moved integer := 0;
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{owner}') THEN
    CREATE ROLE {owner} LOGIN;
    RAISE NOTICE 'changed: made the role {owner}';
  END IF;
  IF EXISTS (SELECT FROM pg_roles WHERE rolname = '{owner}'
             AND (rolsuper OR rolcreaterole OR rolcreatedb OR rolreplication OR rolbypassrls)) THEN
    ALTER ROLE {owner} NOSUPERUSER NOCREATEROLE NOCREATEDB NOREPLICATION NOBYPASSRLS;
    RAISE NOTICE 'changed: {owner} lost its extra powers';
  END IF;
  FOR statement IN
    SELECT format('ALTER DATABASE %I OWNER TO {owner}', datname) FROM pg_database
     WHERE datname = current_database() AND datdba <> '{owner}'::regrole
    UNION ALL
    SELECT 'ALTER SCHEMA public OWNER TO {owner}' FROM pg_namespace
     WHERE nspname = 'public' AND nspowner <> '{owner}'::regrole
    UNION ALL
    -- Tables take their own sequences (serial, identity) along; other sequences go alone.
    SELECT format('ALTER %s public.%I OWNER TO {owner}',
                  CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'S' THEN 'SEQUENCE'
                                 ELSE 'TABLE' END, c.relname)
      FROM pg_class c
     WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
       AND c.relowner <> '{owner}'::regrole
       AND NOT (c.relkind = 'S' AND EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                                             AND d.objid = c.oid AND d.deptype IN ('a', 'i')))
    UNION ALL
    SELECT format('ALTER TYPE public.%I OWNER TO {owner}', t.typname) FROM pg_type t
     WHERE t.typnamespace = 'public'::regnamespace AND t.typtype IN ('e', 'd', 'r')
       AND t.typowner <> '{owner}'::regrole
  LOOP
    EXECUTE statement;
    moved := moved + 1;
  END LOOP;
  IF moved > 0 THEN
    RAISE NOTICE 'changed: gave % objects to {owner}', moved;
  END IF;
END
$$;
ALTER ROLE {owner} PASSWORD :'owner_password';
"""
OWNER_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def owner_script(owner, password, check_mode=False):
    """psql's standard input that gives the database to owner; in check mode it is rolled back."""
    if not OWNER_NAME.match(owner):
        raise PostgresError(f"owner {owner!r} is no plain PostgreSQL role name (lower case letters, digits, _)")
    if "\n" in password or "\r" in password:
        raise PostgresError("the owner's password holds a line break, which psql cannot take in a variable")
    script = OWNER_SCRIPT.format(owner=owner)
    if check_mode:
        script = "BEGIN;\n" + script + "\nROLLBACK;\n"
    return "\\set owner_password " + psql_literal(password) + "\n" + script


def psql_literal(text):
    """A psql meta-command's argument in single quotes: a quote doubled, a backslash escaped."""
    return "'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


def pgpass_password(text, user):
    """The password of user's first line in a libpq password file (host:port:db:user:password, with \\: and \\\\)."""
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = re.findall(r"((?:[^:\\]|\\.)*)(?::|$)", line)[:5]
        fields = [re.sub(r"\\(.)", r"\1", field) for field in fields]
        if len(fields) == 5 and fields[3] in ("*", user):
            return fields[4]
    return ""


def owner_changes(stderr):
    """What the owner script moved: its NOTICEs that start with changed:."""
    return [line.split("changed:", 1)[1].strip() for line in stderr.splitlines() if "changed:" in line]
