# -*- coding: utf-8 -*-
# Copyright (c) mlops.mlflow developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""A fake S3 endpoint for the unit tests: an HTTP server on 127.0.0.1 that checks every request's
Signature Version 4 (recomputed with the client's own signer from the received headers) and keeps
buckets in memory. Listings come in pages of two keys, so pagination is exercised."""

from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, unquote, urlsplit
from xml.sax.saxutils import escape

import pytest
from ansible_collections.mlops.mlflow.plugins.module_utils import mlflow_s3

ACCESS, SECRET = "AKUNITTEST", "unit-test-secret"
PAGE = 2


class FakeS3(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.buckets = {}
        self.requests = []
        self.tamper = {}  # key -> bytes served instead of the stored body

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _answer(self, status, body=b"", content_type="application/xml"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _authorized(self, body):
        url = urlsplit(self.path)
        headers = {name: self.headers[name] for name in ("host", "x-amz-date", "x-amz-content-sha256")}
        auth = self.headers.get("authorization", "")
        now_text = headers["x-amz-date"]
        import datetime

        now = datetime.datetime.strptime(now_text, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.timezone.utc)
        query = parse_qsl(url.query, keep_blank_values=True)
        expected = mlflow_s3.sign(
            self.command, url.path, query, headers, headers["x-amz-content-sha256"], ACCESS, SECRET, "us-east-1", now
        )
        digest_ok = body is None or hashlib.sha256(body).hexdigest() == headers["x-amz-content-sha256"]
        return auth == expected and digest_ok

    def _route(self):
        body = None
        if self.command == "PUT":
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
        self.server.requests.append((self.command, self.path))
        if not self._authorized(body):
            return self._answer(403, b"<Error><Code>SignatureDoesNotMatch</Code></Error>")
        url = urlsplit(self.path)
        bucket, key = unquote(url.path).lstrip("/").partition("/")[::2]
        buckets = self.server.buckets
        if not key:
            if self.command == "PUT":
                buckets.setdefault(bucket, {})
                return self._answer(200)
            if bucket not in buckets:
                return self._answer(404, b"<Error><Code>NoSuchBucket</Code></Error>")
            if self.command == "HEAD":
                return self._answer(200)
            query = dict(parse_qsl(url.query, keep_blank_values=True))
            keys = sorted(k for k in buckets[bucket] if k.startswith(query.get("prefix", "")))
            start = int(query.get("continuation-token", "0"))
            page = keys[start : start + PAGE]
            truncated = start + PAGE < len(keys)
            items = "".join(
                f"<Contents><Key>{escape(k)}</Key><Size>{len(buckets[bucket][k])}</Size></Contents>" for k in page
            )
            token = f"<NextContinuationToken>{start + PAGE}</NextContinuationToken>" if truncated else ""
            xml = (
                '<?xml version="1.0"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
                f"{items}<IsTruncated>{str(truncated).lower()}</IsTruncated>{token}</ListBucketResult>"
            )
            return self._answer(200, xml.encode())
        if bucket not in buckets:
            return self._answer(404, b"<Error><Code>NoSuchBucket</Code></Error>")
        if self.command == "PUT":
            buckets[bucket][key] = body
            return self._answer(200)
        if self.command == "GET" and key in buckets[bucket]:
            return self._answer(200, self.server.tamper.get(key, buckets[bucket][key]), "application/octet-stream")
        return self._answer(404, b"<Error><Code>NoSuchKey</Code></Error>")

    do_GET = do_PUT = do_HEAD = _route


@pytest.fixture
def fake_s3(tmp_path):
    """(server, client, credentials file) of a fresh fake S3."""
    server = FakeS3()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    credentials = tmp_path / "aws_credentials"
    credentials.write_text(f"[default]\naws_access_key_id = {ACCESS}\naws_secret_access_key = {SECRET}\n")
    client = mlflow_s3.S3.from_spec({"endpoint": server.endpoint, "credentials_file": str(credentials)})
    yield server, client, credentials
    server.shutdown()
    server.server_close()
