"""Copy every row of MLflow's SQLite databases into an empty PostgreSQL database at the same schema revision,
then compare both sides table by table (row count and checksum). Prints one line of JSON.

The server role runs it in a one-off container of the MLflow image (SQLAlchemy and the PostgreSQL drivers are
there), with the pre-migration backup mounted read-only and the target's password in PGPASSFILE:

  python /mlflow_migrate.py --target postgresql://mlflow_owner@mlflow-postgres:5432/mlflow \
      --source /backup/mlflow.db [--source /backup/basic_auth.db]

The target's schema comes from `mlflow db upgrade` (and the basic-auth app's migration) of the same image, so
its tables are the canonical list; the revisions of both sides must be equal. Everything is copied in one
transaction: on any error nothing is left half-copied. A table's checksum is the sum, modulo 2**256, of the
sha256 of each row (its values in column-name order, normalised so that both dialects agree); the sum does not
depend on row order, which differs with the databases' collations.

  {"ok": true, "revision": {...}, "tables": {"runs": {"source_rows": 3, "target_rows": 3,
   "source_sha256": "...", "target_sha256": "..."}, ...}, "problems": []}

Exit status 0 when the comparison ran (see "ok"), 1 when the copy itself failed (message on stderr).
"""

import argparse
import datetime
import decimal
import hashlib
import json
import sys
import uuid

import sqlalchemy as sa

VERSION_TABLES = {"alembic_version": "tracking", "alembic_version_auth": "auth"}
BATCH = 2000


def normalise(value):
    """A value both dialects render alike (SQLite and PostgreSQL return different Python types for some)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, decimal.Decimal):
        return repr(float(value))
    if isinstance(value, datetime.datetime):
        return value.replace(tzinfo=None).isoformat()
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def table_digest(conn, table):
    """(rows, checksum) of a table, independent of row order."""
    columns = sorted(column.name for column in table.columns)
    total, rows = 0, 0
    result = conn.execution_options(stream_results=True).execute(sa.select(*[table.c[name] for name in columns]))
    for row in result:
        encoded = json.dumps([normalise(value) for value in row], separators=(",", ":")).encode()
        total = (total + int.from_bytes(hashlib.sha256(encoded).digest(), "big")) % (1 << 256)
        rows += 1
    return rows, f"{total:064x}"


def revisions(conn, metadata):
    found = {}
    for name, kind in VERSION_TABLES.items():
        if name in metadata.tables:
            found[kind] = conn.execute(sa.select(metadata.tables[name].c.version_num)).scalar()
    return found


def reset_sequences(conn, tables):
    """Serial and identity columns continue after the copied ids (experiment ids, say)."""
    for table in tables:
        for column in table.columns:
            sequence = conn.execute(sa.select(sa.func.pg_get_serial_sequence(f'"{table.name}"', column.name))).scalar()
            if sequence:
                highest = sa.func.max(column)
                conn.execute(
                    sa.select(sa.func.setval(sequence, sa.func.coalesce(highest, 1), highest.is_not(None))).select_from(
                        table
                    )
                )


def migrate(sources, target_uri):
    """Copy, then compare. Returns the report (see the module docstring)."""
    target = sa.create_engine(target_uri)
    target_md = sa.MetaData()
    target_md.reflect(target)
    report = {"ok": False, "revision": {}, "tables": {}, "problems": []}
    problems = report["problems"]
    engines = []
    owner = {}  # table name -> (source engine, its reflected table)
    for path in sources:
        engine = sa.create_engine(f"sqlite:///file:{path}?mode=ro&uri=true")
        metadata = sa.MetaData()
        metadata.reflect(engine)
        engines.append((path, engine, metadata))
        with engine.connect() as conn:
            source_revisions = revisions(conn, metadata)
        for name, table in metadata.tables.items():
            if name in VERSION_TABLES:
                continue
            if name not in target_md.tables:
                problems.append(f"table {name} of {path} does not exist in the target")
            elif name in owner:
                problems.append(f"table {name} is in more than one source")
            else:
                owner[name] = (engine, table)
                missing = {c.name for c in table.columns} ^ {c.name for c in target_md.tables[name].columns}
                if missing:
                    problems.append(f"table {name}: columns {sorted(missing)} are not on both sides")
        report["revision"].update({f"source_{kind}": rev for kind, rev in source_revisions.items()})
    with target.connect() as conn:
        target_revisions = revisions(conn, target_md)
    report["revision"].update({f"target_{kind}": rev for kind, rev in target_revisions.items()})
    for kind in ("tracking", "auth"):
        source, dest = report["revision"].get(f"source_{kind}"), report["revision"].get(f"target_{kind}")
        if source is not None and source != dest:
            problems.append(f"the {kind} schema revision differs: source {source}, target {dest}")
    if problems:
        return report

    copied = [table for table in target_md.sorted_tables if table.name in owner]
    with target.begin() as conn:
        # Migrations may seed rows (the default workspace, say); the source has them too.
        for table in reversed(copied):
            conn.execute(table.delete())
        for table in copied:
            engine, source_table = owner[table.name]
            names = [column.name for column in table.columns]
            with engine.connect() as source_conn:
                result = source_conn.execution_options(stream_results=True).execute(
                    sa.select(*[source_table.c[name] for name in names])
                )
                while batch := result.fetchmany(BATCH):
                    conn.execute(table.insert(), [dict(zip(names, row, strict=True)) for row in batch])
        if target.dialect.name == "postgresql":
            reset_sequences(conn, copied)

    with target.connect() as target_conn:
        for table in copied:
            engine, source_table = owner[table.name]
            with engine.connect() as source_conn:
                source_rows, source_sum = table_digest(source_conn, source_table)
            target_rows, target_sum = table_digest(target_conn, table)
            report["tables"][table.name] = {
                "source_rows": source_rows,
                "target_rows": target_rows,
                "source_sha256": source_sum,
                "target_sha256": target_sum,
            }
            if source_rows != target_rows:
                problems.append(f"table {table.name}: {source_rows} rows in SQLite, {target_rows} in the target")
            elif source_sum != target_sum:
                problems.append(f"table {table.name}: the rows differ (checksums {source_sum[:12]}, {target_sum[:12]})")
    for _path, engine, _metadata in engines:
        engine.dispose()
    target.dispose()
    report["ok"] = not problems
    return report


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True, help="SQLAlchemy URI of the empty target database")
    parser.add_argument("--source", action="append", required=True, help="a SQLite database file (repeatable)")
    args = parser.parse_args(argv)
    try:
        report = migrate(args.source, args.target)
    except sa.exc.SQLAlchemyError as error:
        print(f"mlflow_migrate: the copy failed and was rolled back: {str(error).splitlines()[0]}", file=sys.stderr)
        return 1
    print(json.dumps(report, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
