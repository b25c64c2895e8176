# -*- coding: utf-8 -*-
# Copyright (c) mlops.mlflow developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Note that this module util is **PRIVATE** to the collection. It can have breaking changes at any time.
# Do not use this from other collections or standalone plugins/modules!

"""The options mlflow_backup, mlflow_restore, mlflow_store_info and mlflow_s3_bucket share, and the helpers
they become: the one part of the store module_utils that knows AnsibleModule, and the list of the
database backends besides SQLite's files."""

from __future__ import annotations

import json

from ansible_collections.mlops.mlflow.plugins.module_utils.mlflow_postgres import Postgres
from ansible_collections.mlops.mlflow.plugins.module_utils.mlflow_s3 import S3Error

# The database backends besides SQLite's files: the modules' option that reaches one, and its helper
# class (mlflow_postgres.Postgres shows the interface). Adding a backend adds its line here.
DATABASE_HELPERS = {"postgres": Postgres}

BACKEND_ARGUMENT_SPEC = {
    **{option: {"type": "dict", "options": helper.OPTIONS} for option, helper in DATABASE_HELPERS.items()},
    "s3": {
        "type": "dict",
        "options": {
            "endpoint": {"type": "str", "required": True},
            "container": {"type": "str"},
            "network": {"type": "str"},
            "bucket": {"type": "str", "required": True},
            "region": {"type": "str", "default": "us-east-1"},
            "credentials_file": {"type": "path", "required": True},
        },
    },
}


def backends(module, s3_client=True):
    """(database helper or None, (S3 client, bucket) or None) from a module's options (postgres, s3).

    s3_client=False skips the client (a swap-in only needs to know that the artifacts live in S3,
    and the S3 server is stopped then). Fails the module, naming the option, when the S3 keys
    cannot be read or the managed S3 container has no address."""
    from ansible_collections.mlops.mlflow.plugins.module_utils.mlflow_s3 import S3

    db = s3 = None
    for option, helper in DATABASE_HELPERS.items():
        if module.params.get(option):
            db = helper(
                module.params[option], lambda argv, data=None: module.run_command(argv, data=data, binary_data=True)
            )
    if module.params.get("s3") and s3_client:
        spec = dict(module.params["s3"])
        if spec.get("container"):
            spec["endpoint"] = container_endpoint(module, spec)
        try:
            s3 = (S3.from_spec(spec), spec["bucket"])
        except S3Error as error:
            module.fail_json(msg=f"s3.credentials_file: {error}.")
    return db, s3


def container_endpoint(module, spec):
    """The endpoint with its host replaced by the address of s3.container on s3.network: the host
    reaches a managed S3 that publishes no port there."""
    from urllib.parse import urlsplit, urlunsplit

    rc, out, err = module.run_command(
        ["docker", "inspect", "-f", "{{json .NetworkSettings.Networks}}", spec["container"]]
    )
    networks = {}
    if rc == 0:
        try:
            networks = json.loads(out)
        except ValueError:
            networks = {}
    address = (networks.get(spec.get("network") or "") or {}).get("IPAddress")
    if not address:
        module.fail_json(
            msg=f"s3.container {spec['container']} has no address on the network {spec.get('network')} "
            f"(is it running?): {(err or out).strip()[-300:]}"
        )
    url = urlsplit(spec["endpoint"])
    return urlunsplit((url.scheme, f"{address}:{url.port or 80}", url.path, "", ""))
