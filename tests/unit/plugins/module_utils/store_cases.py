# -*- coding: utf-8 -*-
# Copyright (c) mlops.mlflow developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What the store tests share: a fixed clock, and a stand-in for the PostgreSQL helper."""

from __future__ import annotations

import datetime
import os

from ansible_collections.mlops.mlflow.plugins.module_utils.mlflow_postgres import (
    DUMP,
    Postgres,
    PostgresError,
    parse_facts,
)

FACTS = "revision:tracking=rev2\ncount:experiments=2\ncount:runs=4\ncount:runs_active=4\ncount:metrics=800\ntables=30\n"


def _now(seconds):
    return datetime.datetime(2026, 11, 26, 10, 0, 0, tzinfo=datetime.timezone.utc) + datetime.timedelta(seconds=seconds)


class StandIn:
    """The Postgres helper's interface over an in-memory 'database' (its facts text and dump bytes)."""

    NAME, DUMP, INTEGRITY, DATA_DIR, Error = Postgres.NAME, DUMP, Postgres.INTEGRITY, Postgres.DATA_DIR, PostgresError

    def __init__(self, facts=FACTS, dump=b"PGDMP custom dump"):
        self.text, self.bytes, self.loaded = facts, dump, None

    def facts(self):
        return parse_facts(self.text)

    def dump(self, dest):
        with open(os.path.join(dest, DUMP), "wb") as handle:
            handle.write(self.bytes)
        return self.facts()

    def check_dump(self, directory):
        with open(os.path.join(directory, DUMP), "rb") as handle:
            return [] if handle.read().startswith(b"PGDMP") else [f"has a {DUMP} that pg_restore cannot read"]

    def load(self, directory):
        if self.facts()["tables"]:
            raise PostgresError("the database already holds tables")
        with open(os.path.join(directory, DUMP), "rb") as handle:
            self.loaded = handle.read()
        return self.facts()
