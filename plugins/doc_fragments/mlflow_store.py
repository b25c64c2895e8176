# -*- coding: utf-8 -*-
# Copyright (c) mlops.mlflow developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:
    # Where the store's data lives when it is not in the store directory's SQLite files and mlruns/.
    DOCUMENTATION = r"""
options:
  postgres:
    description:
      - The tracking (and basic-auth) database is this PostgreSQL database, not C(mlflow.db).
      - Every step runs a one-off container of O(postgres.image) (C(docker run --rm)) on O(postgres.network), with
        O(postgres.pgpass_file) mounted read-only as C(PGPASSFILE), so no password is on a command line.
    type: dict
    version_added: 0.3.0
    suboptions:
      image:
        description:
          - A PostgreSQL image with C(psql), C(pg_dump) and C(pg_restore), of the server's major version or newer.
        type: str
        required: true
      network:
        description: The Docker network the one-off containers join to reach the database (V(host) for an external one).
        type: str
        default: host
      uri:
        description: The database URI without a password, such as C(postgresql://mlflow_owner@mlflow-postgres:5432/mlflow).
        type: str
        required: true
      pgpass_file:
        description: A libpq password file on the host (mode C(0600)) with the password for O(postgres.uri).
        type: path
        required: true
  s3:
    description:
      - The artifacts are the objects of this S3 bucket, not the files in C(mlruns/). They are copied with a small
        S3 client (Signature Version 4) from the host, so the host must reach O(s3.endpoint).
      - A backup holds them as files in C(mlruns/), each named by its key.
    type: dict
    version_added: 0.3.0
    suboptions:
      endpoint:
        description: The S3 endpoint, such as C(http://mlflow-s3:8333) or C(https://s3.example).
        type: str
        required: true
      container:
        description:
          - A container that serves O(s3.endpoint) and publishes no port. The host then reaches it at that container's
            address on O(s3.network), with the port of O(s3.endpoint).
        type: str
      network:
        description: The Docker network of O(s3.container).
        type: str
      bucket:
        description: The bucket that holds MLflow's artifacts, and nothing else.
        type: str
        required: true
      region:
        description: The region in the signature.
        type: str
        default: us-east-1
      credentials_file:
        description: An AWS shared-credentials file on the host whose C([default]) profile has the keys.
        type: path
        required: true
"""

    # The store directory, for the modules that read or change one.
    STORE_DIR = r"""
options:
  store_dir:
    description:
      - The store directory. It holds C(db/mlflow.db) and C(db/basic_auth.db) (SQLite), C(mlruns/) (local artifacts),
        C(docker-compose.yml), and the data of the managed PostgreSQL and S3 in C(postgres/) and C(s3/).
      - A store of a release before 0.5.0 has its databases at the top, not in C(db/); the modules read them there
        until O(mlops.mlflow.mlflow_restore#module:state=db_dir) moves them.
    type: path
    required: true
"""
