# Copyright (c) mlops.mlflow developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Measure the SQLite databases in /mlflow/db (or the folder given after the action), or compact
them (VACUUM), and print one line of JSON:

  {"databases": {"mlflow.db": {"bytes": 1, "free_pages": 0, "page_size": 4096}, ...}, "vacuumed": [...]}

The server role (tasks/compact.yml) runs it in a one-off container of the MLflow image with only the
databases' folder mounted and no network, with MLflow stopped; `vacuum` first checks each
database's integrity and leaves a damaged one untouched (exit 1). A VACUUM rewrites the file in
place through SQLite's journal, so the file keeps its inode, owner and mode."""

import json
import os
import sqlite3
import sys

FOLDER = "/mlflow/db"
NAMES = ("mlflow.db", "basic_auth.db")


def measure(path):
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        free = connection.execute("PRAGMA freelist_count").fetchone()[0]
        size = connection.execute("PRAGMA page_size").fetchone()[0]
    finally:
        connection.close()
    return {"bytes": os.path.getsize(path), "free_pages": free, "page_size": size}


def vacuum(path):
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        try:
            found = connection.execute("PRAGMA integrity_check").fetchall()
        except sqlite3.DatabaseError as error:
            found = [(str(error),)]
        if found != [("ok",)]:
            raise SystemExit(f"{os.path.basename(path)} fails its integrity check, left as it is: {found[:5]}")
        connection.execute("VACUUM")
    finally:
        connection.close()


def main(argv):
    action = argv[1] if len(argv) > 1 else "measure"
    folder = argv[2] if len(argv) > 2 else FOLDER
    paths = [os.path.join(folder, name) for name in NAMES if os.path.isfile(os.path.join(folder, name))]
    vacuumed = []
    if action == "vacuum":
        for path in paths:
            if measure(path)["free_pages"]:
                vacuum(path)
                vacuumed.append(os.path.basename(path))
    print(json.dumps({"databases": {os.path.basename(path): measure(path) for path in paths}, "vacuumed": vacuumed}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
