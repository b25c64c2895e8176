# -*- coding: utf-8 -*-
# Copyright (c) mlops.mlflow developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The S3 client: AWS's own signature examples, and copies through a fake endpoint that checks signatures."""

from __future__ import annotations

import datetime
import os

import pytest
from ansible_collections.mlops.mlflow.plugins.module_utils import mlflow_s3 as s3

# "Examples: Signature Calculations in AWS Signature Version 4", Amazon S3 API reference.
AWS_ACCESS, AWS_SECRET = "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
AWS_NOW = datetime.datetime(2013, 5, 24, tzinfo=datetime.timezone.utc)
AWS_HEADERS = {"host": "examplebucket.s3.amazonaws.com", "x-amz-content-sha256": s3.EMPTY_SHA256}


def test_signature_matches_aws_get_object_example():
    headers = {**AWS_HEADERS, "range": "bytes=0-9", "x-amz-date": "20130524T000000Z"}
    auth = s3.sign("GET", "/test.txt", [], headers, s3.EMPTY_SHA256, AWS_ACCESS, AWS_SECRET, "us-east-1", AWS_NOW)
    assert auth.endswith("Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")
    assert "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date" in auth


def test_signature_matches_aws_list_objects_example():
    headers = {**AWS_HEADERS, "x-amz-date": "20130524T000000Z"}
    query = [("prefix", "J"), ("max-keys", "2")]
    auth = s3.sign("GET", "/", query, headers, s3.EMPTY_SHA256, AWS_ACCESS, AWS_SECRET, "us-east-1", AWS_NOW)
    assert auth.endswith("Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7")


def tree(root, files):
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return {name: s3.sha256_file(root / name) for name in files}


FILES = {
    "1/r1/artifacts/model.bin": os.urandom(70_000),
    "1/r1/artifacts/notes with space+plus.txt": b"notes\n",
    "1/r2/artifacts/a/b/c.json": b"{}",
    "2/r3/artifacts/empty": b"",
    "2/r3/artifacts/x%41y": b"percent",
}


def test_a_tree_goes_in_and_comes_back_byte_for_byte_across_pages(fake_s3, tmp_path):
    server, client, _credentials = fake_s3
    digests = tree(tmp_path / "src", FILES)
    assert s3.import_tree(client, "mlflow", str(tmp_path / "src"), digests) == len(FILES)
    assert sorted(key for key, _size in client.list_objects("mlflow")) == sorted(FILES)
    assert sum(1 for method, path in server.requests if method == "GET" and "list-type=2" in path) == 3
    assert s3.export_bucket(client, "mlflow", str(tmp_path / "out")) == len(FILES)
    assert {name: s3.sha256_file(tmp_path / "out" / name) for name in FILES} == digests
    found = s3.bucket_digests(client, "mlflow", str(tmp_path / "scratch"))
    assert found == digests and s3.diff_digests(digests, found) == []
    assert not (tmp_path / "scratch").exists()
    assert s3.tree_digest(found) == s3.tree_digest(dict(reversed(list(digests.items()))))


def test_differences_are_named_object_by_object(fake_s3, tmp_path):
    server, client, _credentials = fake_s3
    digests = tree(tmp_path / "src", FILES)
    s3.import_tree(client, "mlflow", str(tmp_path / "src"))
    server.tamper["1/r2/artifacts/a/b/c.json"] = b"{tampered}"
    server.buckets["mlflow"]["stray"] = b"x"
    del server.buckets["mlflow"]["2/r3/artifacts/empty"]
    found = s3.bucket_digests(client, "mlflow", str(tmp_path / "scratch"))
    assert s3.diff_digests(digests, found) == [
        "object 2/r3/artifacts/empty is missing from the bucket",
        "object stray is in the bucket but not in the source",
        "object 1/r2/artifacts/a/b/c.json differs from the source (sha256)",
    ]


def test_create_bucket_only_when_missing(fake_s3):
    _server, client, _credentials = fake_s3
    assert client.bucket_exists("mlflow") is False
    assert client.create_bucket("mlflow") is True
    assert client.create_bucket("mlflow") is False


def test_wrong_keys_are_refused_with_the_request_named(fake_s3):
    server, _client, _credentials = fake_s3
    wrong = s3.S3(server.endpoint, "AKUNITTEST", "not-the-secret")
    with pytest.raises(s3.S3Error, match=r"^PUT /mlflow answered 403 SignatureDoesNotMatch$"):
        wrong.request("PUT", "mlflow")


def test_unreachable_endpoint_names_the_url():
    client = s3.S3("http://127.0.0.1:9", "a", "b", timeout=2)
    with pytest.raises(s3.S3Error, match=r"^HEAD http://127.0.0.1:9/mlflow failed: "):
        client.bucket_exists("mlflow")


@pytest.mark.parametrize("key", ["", "/abs", "a/../b", "a//b", "./a", "a/."])
def test_keys_that_would_escape_the_backup_folder_are_refused(key):
    with pytest.raises(s3.S3Error, match="cannot be kept as a file"):
        s3.safe_key(key)


def test_xml_with_a_document_type_is_refused():
    with pytest.raises(s3.S3Error, match="document type"):
        s3.parse_xml(b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>')


def test_credentials_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "creds"
    bad.write_text("[other]\naws_access_key_id = a\n")
    with pytest.raises(s3.S3Error, match=f"cannot read the S3 keys from {bad} "):
        s3.read_credentials(str(bad))
    with pytest.raises(s3.S3Error, match="must be an http:// or https:// URL"):
        s3.S3("ftp://x", "a", "b")
