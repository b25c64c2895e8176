# -*- coding: utf-8 -*-
# Copyright (c) mlops.mlflow developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""A small S3 client (AWS Signature Version 4, path-style URLs) and the artifact copies built on it.

The backup, restore and migration modules copy MLflow's artifacts out of and into an
S3-compatible store from the server host, where Ansible's Python has no boto3. Only what
they need is here: create and probe a bucket, list, get to a file, put from a file. Bodies
are streamed with an exact Content-Length and a signed sha256, so http.client is used
rather than module_utils.urls, whose urllib would chunk a file body.

Keys are read from an AWS shared-credentials file (the role's root-only secrets/aws_credentials),
so they never travel through module arguments.
"""

from __future__ import annotations

import configparser
import datetime
import hashlib
import hmac
import http.client
import os
import ssl
import xml.etree.ElementTree as ET
from urllib.parse import quote, urlsplit

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
ALGORITHM = "AWS4-HMAC-SHA256"
CHUNK = 1 << 20


class S3Error(Exception):
    """An S3 request failed; the message names the request and the answer."""


def _quote(text, safe="-_.~"):
    return quote(text, safe=safe)


def _hmac(key, text):
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def signing_key(secret_key, date, region, service="s3"):
    key = _hmac(("AWS4" + secret_key).encode(), date)
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    return key


def sign(method, path, query, headers, payload_sha256, access_key, secret_key, region, now):
    """The Authorization header for a request whose headers (host and x-amz-date included) are given.

    path is the already-encoded URL path; query a list of (name, value) pairs, not encoded."""
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    date = amz_date[:8]
    canonical_headers = {name.lower(): " ".join(str(value).split()) for name, value in headers.items()}
    signed = ";".join(sorted(canonical_headers))
    canonical_query = "&".join(f"{_quote(k)}={_quote(v)}" for k, v in sorted(query))
    canonical = "\n".join(
        [
            method,
            path,
            canonical_query,
            "".join(f"{name}:{canonical_headers[name]}\n" for name in sorted(canonical_headers)),
            signed,
            payload_sha256,
        ]
    )
    scope = f"{date}/{region}/s3/aws4_request"
    to_sign = "\n".join([ALGORITHM, amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    signature = hmac.new(signing_key(secret_key, date, region), to_sign.encode(), hashlib.sha256).hexdigest()
    return f"{ALGORITHM} Credential={access_key}/{scope}, SignedHeaders={signed}, Signature={signature}"


def read_credentials(path, profile="default"):
    """(access key, secret key) from an AWS shared-credentials file."""
    parser = configparser.ConfigParser()
    try:
        with open(path) as handle:
            parser.read_file(handle)
        section = parser[profile]
        return section["aws_access_key_id"].strip(), section["aws_secret_access_key"].strip()
    except (OSError, KeyError, configparser.Error) as error:
        raise S3Error(f"cannot read the S3 keys from {path} (profile {profile}): {error}") from error


def parse_xml(data):
    """An S3 answer as an element; a document type (the door to entity expansion) is refused first."""
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise S3Error("the S3 endpoint answered XML with a document type, which is refused")
    try:
        return ET.fromstring(data)  # noqa: S314 - no DOCTYPE, so no entities to expand
    except ET.ParseError as error:
        raise S3Error(f"the S3 endpoint answered XML that cannot be read: {error}") from error


def _strip(tag):
    return tag.rsplit("}", 1)[-1]


def _text(element, name):
    for child in element:
        if _strip(child.tag) == name:
            return child.text or ""
    return None


def safe_key(key):
    """A key as a relative file path, or an S3Error for a key that would escape the folder."""
    parts = key.split("/")
    if not key or key.startswith("/") or any(part in ("", ".", "..") for part in parts) or "\x00" in key:
        raise S3Error(f"object key {key!r} cannot be kept as a file (empty, absolute or with '.', '..' or '//')")
    return os.path.join(*parts)


class S3:
    """A client for one endpoint (http://host:port or https://...) with static keys."""

    def __init__(self, endpoint, access_key, secret_key, region="us-east-1", timeout=120, now=None):
        url = urlsplit(endpoint)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise S3Error(f"S3 endpoint {endpoint!r} must be an http:// or https:// URL")
        self.scheme, self.netloc = url.scheme, url.netloc
        self.base = url.path.rstrip("/")
        self.access_key, self.secret_key, self.region = access_key, secret_key, region
        self.timeout = timeout
        self._now = now or (lambda: datetime.datetime.now(datetime.timezone.utc))

    @classmethod
    def from_spec(cls, spec):
        """From a module's s3 option: endpoint, region and the credentials file."""
        access_key, secret_key = read_credentials(spec["credentials_file"])
        return cls(spec["endpoint"], access_key, secret_key, spec.get("region") or "us-east-1")

    def _connection(self):
        if self.scheme == "https":
            return http.client.HTTPSConnection(self.netloc, timeout=self.timeout, context=ssl.create_default_context())
        return http.client.HTTPConnection(self.netloc, timeout=self.timeout)

    def request(self, method, bucket, key="", query=(), body=None, size=0, payload_sha256=EMPTY_SHA256, sink=None):
        """One signed request. body: bytes or a binary file; sink: a file the answer's body is streamed
        to. Returns (status, body bytes or b'' when sunk). Raises S3Error for a status >= 300."""
        path = self.base + "/" + _quote(bucket) + ("/" + _quote(key, safe="-_.~/") if key else "")
        query = list(query)
        headers = {"host": self.netloc, "x-amz-date": self._now().strftime("%Y%m%dT%H%M%SZ")}
        headers["x-amz-content-sha256"] = payload_sha256
        headers["authorization"] = sign(
            method, path, query, headers, payload_sha256, self.access_key, self.secret_key, self.region, self._now()
        )
        headers["content-length"] = str(size if body is not None else 0)
        target = path + ("?" + "&".join(f"{_quote(k)}={_quote(v)}" for k, v in query) if query else "")
        connection = self._connection()
        try:
            connection.request(method, target, body=body, headers=headers)
            answer = connection.getresponse()
            if answer.status < 300 and sink is not None:
                for chunk in iter(lambda: answer.read(CHUNK), b""):
                    sink.write(chunk)
                data = b""
            else:
                data = answer.read()
        except (OSError, http.client.HTTPException) as error:
            raise S3Error(f"{method} {self.scheme}://{self.netloc}{path} failed: {error}") from error
        finally:
            connection.close()
        if answer.status >= 300:
            code = ""
            if data.startswith(b"<"):
                try:
                    code = _text(parse_xml(data), "Code") or ""
                except S3Error:
                    code = ""
            raise S3Error(f"{method} {path} answered {answer.status} {code or answer.reason}".strip())
        return answer.status, data

    def bucket_exists(self, bucket):
        try:
            self.request("HEAD", bucket)
        except S3Error as error:
            if " 404 " in f"{error} ":
                return False
            raise
        return True

    def create_bucket(self, bucket):
        """Create the bucket unless it exists; True when it was created."""
        if self.bucket_exists(bucket):
            return False
        self.request("PUT", bucket)
        return True

    def list_objects(self, bucket, prefix=""):
        """Every object as (key, size), in key order (ListObjectsV2, all pages)."""
        token = None
        while True:
            query = [("list-type", "2"), ("prefix", prefix)] + ([("continuation-token", token)] if token else [])
            _status, data = self.request("GET", bucket, query=query)
            root = parse_xml(data)
            for element in root:
                if _strip(element.tag) == "Contents":
                    yield _text(element, "Key"), int(_text(element, "Size") or 0)
            token = _text(root, "NextContinuationToken")
            if (_text(root, "IsTruncated") or "false").lower() != "true" or not token:
                return

    def get_file(self, bucket, key, path):
        """Download an object to path; return its sha256."""
        with open(path, "wb") as handle:
            self.request("GET", bucket, key, sink=handle)
        return sha256_file(path)

    def put_file(self, bucket, key, path, digest=None):
        """Upload a file as one object (up to S3's 5 GB single-request limit)."""
        digest = digest or sha256_file(path)
        with open(path, "rb") as handle:
            self.request("PUT", bucket, key, body=handle, size=os.path.getsize(path), payload_sha256=digest)


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


# --- artifact copies ----------------------------------------------------------------------------


def export_bucket(client, bucket, dest):
    """Copy every object of the bucket into dest (key = relative path); return the number of files."""
    count = 0
    for key, _size in client.list_objects(bucket):
        path = os.path.join(dest, safe_key(key))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        client.get_file(bucket, key, path)
        count += 1
    return count


def local_files(root):
    """{key: path} of every file below root, keys with '/' separators."""
    found = {}
    for directory, _subdirs, names in os.walk(root):
        for name in names:
            path = os.path.join(directory, name)
            found[os.path.relpath(path, root).replace(os.sep, "/")] = path
    return found


def import_tree(client, bucket, root, digests=None):
    """Upload every file below root into the bucket (made when missing); return the number of files.

    digests: {key: sha256} known already (a backup's manifest), so files are read once."""
    client.create_bucket(bucket)
    files = local_files(root) if os.path.isdir(root) else {}
    for key, path in sorted(files.items()):
        client.put_file(bucket, key, path, (digests or {}).get(key))
    return len(files)


def bucket_digests(client, bucket, scratch):
    """{key: sha256} of every object, each downloaded into scratch and hashed: a check that does not
    trust the server's ETag. scratch is a folder for one object at a time, removed afterwards."""
    found = {}
    os.makedirs(scratch, mode=0o700, exist_ok=True)
    probe = os.path.join(scratch, "object")
    try:
        for key, _size in client.list_objects(bucket):
            found[key] = client.get_file(bucket, key, probe)
    finally:
        if os.path.exists(probe):
            os.unlink(probe)
        os.rmdir(scratch)
    return found


def diff_digests(expected, found):
    """What differs between two {key: sha256}, as phrases; [] when equal."""
    problems = [f"object {key} is missing from the bucket" for key in sorted(set(expected) - set(found))]
    problems += [f"object {key} is in the bucket but not in the source" for key in sorted(set(found) - set(expected))]
    problems += [
        f"object {key} differs from the source (sha256)"
        for key in sorted(set(found) & set(expected))
        if found[key] != expected[key]
    ]
    return problems


def tree_digest(digests):
    """One sha256 over {key: sha256}, the same for equal sets of objects whatever their order."""
    total = hashlib.sha256()
    for key in sorted(digests):
        total.update(f"{key}\0{digests[key]}\n".encode())
    return total.hexdigest()
