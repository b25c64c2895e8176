#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) mlops.mlflow developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: mlflow_s3_bucket
short_description: Make the S3 bucket that holds MLflow's artifacts
version_added: 0.3.0
description:
  - Runs on the MLflow server host. Creates the bucket O(s3.bucket) when it does not exist, with the keys of
    O(s3.credentials_file), and reports how many objects it holds.
  - The server role calls it at every deploy with C(mlflow_server_artifacts=s3), so MLflow never answers an artifact
    upload with C(NoSuchBucket).
author:
  - mlops.mlflow developers (@mlops)
extends_documentation_fragment:
  - mlops.mlflow.attributes
  - mlops.mlflow.attributes.changes
  - mlops.mlflow.attributes.idempotent
  - mlops.mlflow.mlflow_store
options:
  s3:
    required: true
notes:
  - The option O(postgres) of the shared fragment is not used.
seealso:
  - module: mlops.mlflow.mlflow_backup
"""

EXAMPLES = r"""
- name: Make the artifact bucket on the managed S3 (it publishes no port)
  mlops.mlflow.mlflow_s3_bucket:
    s3:
      endpoint: http://mlflow-s3:8333
      container: mlflow-s3
      network: mlflow_default
      bucket: mlflow
      credentials_file: /opt/mlflow/secrets/aws_credentials
"""

RETURN = r"""
created:
  description: Whether the bucket was created (in check mode, would be).
  returned: always
  type: bool
objects:
  description: Objects in the bucket; V(0) for a new one.
  returned: always
  type: int
msg:
  description: What was done.
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.mlops.mlflow.plugins.module_utils._backends import BACKEND_ARGUMENT_SPEC, backends  # noqa: E402
from ansible_collections.mlops.mlflow.plugins.module_utils.mlflow_s3 import S3Error  # noqa: E402


def main():
    spec = dict(BACKEND_ARGUMENT_SPEC)
    spec["s3"] = dict(spec["s3"], required=True)
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    _db, (client, bucket) = backends(module)
    try:
        exists = client.bucket_exists(bucket)
        if not exists and not module.check_mode:
            client.create_bucket(bucket)
        objects = sum(1 for _object in client.list_objects(bucket)) if exists else 0
    except S3Error as error:
        module.fail_json(
            msg=f"The bucket {bucket} at {module.params['s3']['endpoint']} cannot be made or read: {error}."
        )
    module.exit_json(
        changed=not exists,
        created=not exists,
        objects=objects,
        msg=f"Bucket {bucket} {'holds ' + str(objects) + ' objects' if exists else 'created'}.",
    )


if __name__ == "__main__":
    main()
