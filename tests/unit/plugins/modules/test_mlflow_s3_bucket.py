# -*- coding: utf-8 -*-
# Copyright (c) mlops.mlflow developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""mlflow_s3_bucket run the way Ansible runs it, against the fake S3 of tests/unit/plugins/conftest.py."""

from __future__ import annotations

from ansible_collections.mlops.mlflow.tests.unit.plugins.modules.store_modules import run


def test_bucket_module_creates_once_and_counts(fake_s3, capsys):
    from ansible_collections.mlops.mlflow.plugins.modules import mlflow_s3_bucket

    server, _client, credentials = fake_s3
    spec = {"endpoint": server.endpoint, "bucket": "mlflow", "credentials_file": str(credentials)}
    code, result = run(mlflow_s3_bucket, capsys, s3=spec, _ansible_check_mode=True)
    assert code == 0 and result["changed"] and "mlflow" not in server.buckets
    code, result = run(mlflow_s3_bucket, capsys, s3=spec)
    assert code == 0 and result["created"] and result["objects"] == 0
    server.buckets["mlflow"]["1/r/artifacts/x"] = b"x"
    code, result = run(mlflow_s3_bucket, capsys, s3=spec)
    assert code == 0 and not result["changed"] and result["objects"] == 1


def test_bucket_module_names_unreadable_keys_and_a_stopped_container(tmp_path, capsys):
    from ansible_collections.mlops.mlflow.plugins.modules import mlflow_s3_bucket

    spec = {"endpoint": "http://127.0.0.1:9", "bucket": "mlflow", "credentials_file": str(tmp_path / "none")}
    code, result = run(mlflow_s3_bucket, capsys, s3=spec)
    assert code == 1 and result["msg"].startswith(f"s3.credentials_file: cannot read the S3 keys from {tmp_path}/none")
