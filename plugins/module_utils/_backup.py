# -*- coding: utf-8 -*-
# Copyright (c) mlops.mlflow developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Note that this module util is **PRIVATE** to the collection. It can have breaking changes at any time.
# Do not use this from other collections or standalone plugins/modules!

"""Backups of an MLflow store: write one, check one, and decide which to keep.

A backup is a folder <UTC time>-<label> with the store's databases (SQLite's online backup) or a
PostgreSQL dump (mlflow.pgdump), the artifacts as files in mlruns/ (copied from the store, or
from the bucket, each file named by its key), the Compose file, and manifest.json: the counts,
the schema revision and the sha256 of every file. The manifest, checksums, anomaly marking and
retention are the same for every backend.

A restore trusts nothing in a backup folder beyond its manifest (trust_problems): the folder and
every folder above it belong to root and only root can change them, and the tree holds exactly
the files the manifest lists, each a plain file with one name. Files are read and copied without
following links (O_NOFOLLOW), through directory descriptors.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import shutil
import sqlite3
import stat

from ansible_collections.mlops.mlflow.plugins.module_utils._backends import DATABASE_HELPERS
from ansible_collections.mlops.mlflow.plugins.module_utils._store_read import (
    ARTIFACTS,
    AUTH_DB,
    COMPOSE,
    DATABASES,
    DB,
    STACK,
    TRACKING_TABLES,
    StoreError,
    count_files,
    database_info,
    db_path,
    integrity,
    utc_stamp,
)
from ansible_collections.mlops.mlflow.plugins.module_utils.mlflow_s3 import S3Error, export_bucket

MANIFEST = "manifest.json"
# The outcome of the newest backup attempt, success or failure (record_last_run): what the
# server's metrics (mlflow-metrics) read for the last backup's time and result.
LAST_RUN = "last_run.json"
FORMAT = 2
# Backup folders: <UTC timestamp>-<label>; name order is age order.
NAME_RE = re.compile(r"^[0-9]{8}T[0-9]{6}Z-[a-z][a-z0-9-]*\Z")
LABEL_RE = re.compile(r"^[a-z][a-z0-9-]{0,39}\Z")
# A drop of active runs by more than this share since the previous backup is an anomaly.
DROP_SHARE = 0.5


# Messages about a backup's tree stop after this many; the rest is counted.
MAX_PROBLEMS = 20
# A link chain longer than this (the kernel's own limit) is refused.
MAX_LINKS = 40
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


def _open_file(name, dir_fd=None):
    """A regular file's fd, never through a link (ELOOP) and never blocking on a FIFO."""
    fd = os.open(name, _READ, dir_fd=dir_fd)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(f"{name} is not a regular file")
    return fd


def sha256(path):
    digest = hashlib.sha256()
    with os.fdopen(_open_file(path), "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _kind(mode):
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device file"
    return "neither a file nor a folder"


def copy_file(name, dest, dir_fd=None):
    """Copy one regular file (mode and times, as shutil.copy2 does) without following a link at name."""
    src = _open_file(name, dir_fd)
    with os.fdopen(src, "rb") as source:
        info = os.fstat(src)
        out = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(out, "wb") as target:
            shutil.copyfileobj(source, target, 1 << 20)
            os.fchmod(out, stat.S_IMODE(info.st_mode) & 0o777)
    os.utime(dest, ns=(info.st_atime_ns, info.st_mtime_ns))


def copy_tree(source, dest, skipped=None, dir_fd=None, shown=None):
    """Copy a folder of folders and regular files, never through a link, via directory descriptors.

    skipped None: a link or special file raises StoreError. A list: each is named there and left out.
    dir_fd: source is a name in that folder; shown: its path for messages."""
    shown = shown or source
    try:
        fd = os.open(source, _DIR, dir_fd=dir_fd)
    except OSError as error:
        raise StoreError(f"{shown} is not a folder that can be opened without following a link: {error}") from error
    try:
        info = os.fstat(fd)
        os.mkdir(dest, 0o700)
        for entry in sorted(os.scandir(fd), key=lambda item: item.name):
            entry_info = entry.stat(follow_symlinks=False)
            if stat.S_ISDIR(entry_info.st_mode):
                copy_tree(entry.name, os.path.join(dest, entry.name), skipped, fd, os.path.join(shown, entry.name))
            elif stat.S_ISREG(entry_info.st_mode):
                copy_file(entry.name, os.path.join(dest, entry.name), fd)
            elif skipped is None:
                where = os.path.join(shown, entry.name)
                raise StoreError(f"{where} is {_kind(entry_info.st_mode)}; only files and folders are copied")
            else:
                skipped.append(f"{entry.name} in {shown} ({_kind(entry_info.st_mode)})")
        os.chmod(dest, stat.S_IMODE(info.st_mode) & 0o777)
    finally:
        os.close(fd)


def copy_pages(source, dest):
    """SQLite's online backup API: source's pages into dest, which keeps its file (and inode), under
    dest's write lock, consistent while MLflow writes to either; then integrity_check of dest."""
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=60)
    dst = sqlite3.connect(dest, timeout=60)
    try:
        with dst:
            src.backup(dst)
        return integrity(dst)
    finally:
        src.close()
        dst.close()


def _snapshot(source, dest):
    """A consistent copy of a live database, checked."""
    try:
        found = copy_pages(source, dest)
    except sqlite3.Error as error:
        raise StoreError(
            f"{source} cannot be copied: {error}. The live database is damaged; restore a backup "
            "(mlflow_restore state=restored), which moves the damaged files aside without reading them."
        ) from error
    if found != ["ok"]:
        raise StoreError(f"integrity_check of the copy of {source} failed: {found[:3]}")


def _files(root):
    """{relative path: {sha256, size}} of every file below root."""
    files = {}
    for directory, _subdirs, names in os.walk(root, followlinks=False):
        for name in sorted(names):
            path = os.path.join(directory, name)
            if stat.S_ISREG(os.lstat(path).st_mode):
                files[os.path.relpath(path, root)] = {"sha256": sha256(path), "size": os.lstat(path).st_size}
    return files


def _make_private(root):
    """Copies keep their source's modes (mlflow.db is 0666); a backup is root's alone.

    Judged by lstat: a link (to a folder or a file) is never followed, so its target keeps its mode."""
    for directory, subdirs, names in os.walk(root, followlinks=False):
        for name in subdirs + names:
            path = os.path.join(directory, name)
            mode = os.lstat(path).st_mode
            if stat.S_ISDIR(mode):
                os.chmod(path, 0o700)
            elif stat.S_ISREG(mode):
                os.chmod(path, 0o600)


def list_backups(backup_dir):
    """Finished backups (name order = age order), each {name, path, manifest} (manifest None if unreadable)."""
    if not os.path.isdir(backup_dir):
        return []
    found = []
    for name in sorted(os.listdir(backup_dir)):
        path = os.path.join(backup_dir, name)
        if NAME_RE.match(name) and os.path.isdir(path):
            found.append({"name": name, "path": path, "manifest": read_manifest(path)})
    return found


def record_last_run(backup_dir, ok, when=None, name=None, size=None, error=None):
    """Write LAST_RUN in backup_dir, root's alone, by rename: {time, ok, name, bytes, error}. Only into
    a backup folder that exists and is not a link; a failure to record is not the backup's."""
    if os.path.islink(backup_dir) or not os.path.isdir(backup_dir):
        return
    entry = {
        "time": int(when if when is not None else datetime.datetime.now().timestamp()),
        "ok": ok,
        "name": name,
        "bytes": size,
        "error": error,
    }
    partial = os.path.join(backup_dir, f".{LAST_RUN}.partial")
    try:
        if os.path.lexists(partial):
            os.unlink(partial)
        with os.fdopen(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600), "w") as handle:
            json.dump(entry, handle)
        os.replace(partial, os.path.join(backup_dir, LAST_RUN))
    except OSError:
        pass


def read_manifest(path):
    """The manifest, read without following a link, or None."""
    try:
        with os.fdopen(_open_file(os.path.join(path, MANIFEST)), encoding="utf-8") as handle:
            manifest = json.load(handle)
        return manifest if isinstance(manifest, dict) else None
    except (OSError, ValueError):
        return None


def _owner_problem(where, info, parent=False):
    """Why an account other than root could change this folder or file, with the fix, or None.

    A parent may be sticky and world-writable (/tmp): there, only an entry's owner may rename or
    remove it, and the entry below is checked to be root's, so nobody else can swap it."""
    if info.st_uid != 0:
        return f"belongs to uid {info.st_uid}, not root (chown root {where}, or keep backups where only root can write)"
    sticky = parent and stat.S_ISDIR(info.st_mode) and info.st_mode & stat.S_ISVTX
    if info.st_mode & 0o022 and not sticky:
        return f"can be written by group or others, mode {stat.S_IMODE(info.st_mode):04o} (chmod go-w {where})"
    return None


def _path_problems(path):
    """Why the folder at path, or a folder or link on the way to it, is not root's alone ([] when it is).

    Walks the path from / with lstat. A link on the way is followed only when root owns it, and
    what it leads to is checked the same way."""
    if not os.path.isabs(path) or os.path.normpath(path) != path:
        return [f"is not a normalized absolute path; give it as {os.path.normpath(os.path.abspath(path))}"]
    pending = [part for part in path.split("/") if part]
    current, hops = "/", 0
    problem = _owner_problem("/", os.lstat("/"), parent=bool(pending))
    if problem:
        return [f"is inside /, which {problem}"]
    while pending:
        name = pending.pop(0)
        if name in ("", "."):
            continue
        if name == "..":
            current = os.path.dirname(current)
            continue
        candidate = os.path.join(current, name)
        try:
            info = os.lstat(candidate)
        except OSError as error:
            return [f"cannot be reached: {candidate}: {error.strerror}"]
        if stat.S_ISLNK(info.st_mode):
            hops += 1
            if info.st_uid != 0 or hops > MAX_LINKS:
                return [
                    f"is reached through the symbolic link {candidate}, which belongs to uid {info.st_uid}: "
                    f"give the backup's real path"
                ]
            target = os.readlink(candidate)
            pending = [part for part in target.split("/") if part] + pending
            if target.startswith("/"):
                current = "/"
            continue
        last = not pending
        if not stat.S_ISDIR(info.st_mode):
            return [f"cannot be reached: {candidate} is not a folder"]
        problem = _owner_problem(candidate, info, parent=not last)
        if problem:
            return [problem if last else f"is inside {candidate}, which {problem}"]
        current = candidate
    return []


def _name_problem(name):
    """Why a name in the manifest cannot be a file inside the backup, or None."""
    if not isinstance(name, str) or not name:
        return f"lists a file with no name ({name!r}) in its {MANIFEST}"
    if name.startswith("/"):
        return f"lists an absolute name {name!r} in its {MANIFEST}; names are relative to the backup folder"
    parts = name.split("/")
    if ".." in parts:
        return f"lists {name!r} in its {MANIFEST}, which climbs out of the backup folder with '..'"
    if "" in parts or "." in parts or "\0" in name or name == MANIFEST:
        return f"lists {name!r} in its {MANIFEST}, which is not a plain relative file name"
    return None


def _tree_problems(path, listed):
    """What in the backup folder is more than, or other than, the files its manifest lists."""
    folders = {os.path.dirname(name) for name in listed}
    for name in list(folders):
        while name:
            name = os.path.dirname(name)
            folders.add(name)
    problems = []
    pending = [""]
    while pending:
        folder = pending.pop()
        with os.scandir(os.path.join(path, folder) if folder else path) as entries:
            found = sorted(entries, key=lambda item: item.name)
        for entry in found:
            name = f"{folder}/{entry.name}" if folder else entry.name
            info = entry.stat(follow_symlinks=False)
            if stat.S_ISLNK(info.st_mode):
                problems.append(
                    f"holds a symbolic link {name} (to {os.readlink(entry.path)}): a backup holds only files and "
                    "folders; remove it"
                )
                continue
            if stat.S_ISDIR(info.st_mode):
                # MLflow keeps empty folders in mlruns/ (a run without artifacts): only files are listed.
                if name not in folders and name != ARTIFACTS and not name.startswith(ARTIFACTS + "/"):
                    problems.append(f"holds a folder {name} that its {MANIFEST} does not list: remove it")
                    continue
                pending.append(name)
            elif not stat.S_ISREG(info.st_mode):
                kind = _kind(info.st_mode)
                problems.append(f"holds {name}, {kind}: a backup holds only files and folders; remove it")
                continue
            elif name != MANIFEST and name not in listed:
                problems.append(f"holds {name}, which its {MANIFEST} does not list: remove it")
                continue
            elif info.st_nlink > 1:
                problems.append(
                    f"holds {name} with {info.st_nlink} hard links: another name could change it; "
                    "replace it with a copy (cp, then mv over it)"
                )
                continue
            problem = _owner_problem(os.path.join(path, name), info)
            if problem:
                problems.append(f"holds {name}, which {problem}")
    return problems


def trust_problems(path, manifest=None):
    """Why a restore must not trust the backup folder at path, each a phrase that follows its path ([] when fine).

    Nothing is read through a link: the folder and every folder above it must belong to root and be
    writable by root only (a sticky parent such as /tmp excepted), the manifest must name plain
    relative files, and the tree must hold those files and nothing else: no links, no hard-linked or
    special files, no entry the manifest does not list, and every entry root's alone."""
    problems = _path_problems(path)
    if problems:
        return problems
    if manifest is None:
        manifest = read_manifest(path)
    if manifest is None or not isinstance(manifest.get("files"), dict):
        return [f"has no readable {MANIFEST} (a plain file, not a link)"]
    listed = set()
    for name in manifest["files"]:
        problem = _name_problem(name)
        if problem:
            problems.append(problem)
        else:
            listed.add(name)
    try:
        problems += _tree_problems(path, listed)
    except OSError as error:
        problems.append(f"cannot be read: {error}")
    if len(problems) > MAX_PROBLEMS:
        problems = [*problems[:MAX_PROBLEMS], f"and {len(problems) - MAX_PROBLEMS} more such problems"]
    return problems


def _active_runs(manifest):
    counts = (manifest or {}).get("counts") or {}
    # Format 1 manifests count all runs only.
    return counts.get("runs_active", counts.get("runs", 0))


def anomaly(previous, counts):
    """Why a backup with these counts looks like an accident since the previous one, or None.

    Only active runs count: gc removes runs marked deleted, never active ones, so a gc in
    between explains no drop of them."""
    if previous is None:
        return None
    before, now = _active_runs(previous), counts.get("runs_active", 0)
    if before > 0 and now == 0:
        return f"active runs fell from {before} to 0 since the backup {previous.get('name')}"
    if before > 0 and now < before * (1 - DROP_SHARE):
        return f"active runs fell by more than half, from {before} to {now}, since the backup {previous.get('name')}"
    return None


def _snapshot_sqlite(store_dir, partial):
    """The SQLite databases into the backup; returns (schema revision, counts, auth facts or None)."""
    facts = {}
    for db in DATABASES:
        source = db_path(store_dir, db)
        if os.path.islink(source):
            raise StoreError(f"{source} is a symbolic link; a store's database is a plain file. Nothing was backed up.")
        if os.path.isfile(source) and os.path.getsize(source) > 0:
            _snapshot(source, os.path.join(partial, db))
            facts[db] = database_info(os.path.join(partial, db), auth=db == AUTH_DB)
        elif db == DB:
            # A store that never served: an empty database is its faithful copy.
            open(os.path.join(partial, DB), "wb").close()
            facts[db] = database_info(os.path.join(partial, DB))
    auth = None
    if AUTH_DB in facts:
        auth = {"schema_revision": facts[AUTH_DB]["schema_revision"], "counts": facts[AUTH_DB]["counts"]}
    return facts[DB]["schema_revision"], facts[DB]["counts"], auth


def _copy_artifacts(store_dir, partial, s3, skipped):
    dest = os.path.join(partial, ARTIFACTS)
    if s3:
        client, bucket = s3
        os.mkdir(dest)
        try:
            if client.bucket_exists(bucket):
                export_bucket(client, bucket, dest)
        except S3Error as error:
            raise StoreError(f"copying the artifacts out of the bucket {bucket} failed: {error}") from error
        return
    source = os.path.join(store_dir, ARTIFACTS)
    if os.path.islink(source):
        raise StoreError(f"{source} is a symbolic link; the artifacts must be a folder inside the store")
    if os.path.isdir(source):
        # Links and special files are left out, not copied: MLflow writes neither, a restore would
        # refuse the backup, and a backup that fails on them would leave the team with none.
        copy_tree(source, dest, skipped)
    else:
        os.mkdir(dest)


def create_backup(store_dir, backup_dir, label, mlflow_version=None, now=None, db=None, s3=None):
    """Back up the store into a new folder of backup_dir; return its manifest (without files) and path.

    Databases first (SQLite's online backup, or the dump of one snapshot by the helper db, such as
    PostgreSQL's pg_dump), then the artifacts:
    every artifact a backed-up run refers to is in the backup. The folder is written as
    .<name>.partial, private from the first byte, and renamed only when complete."""
    if not LABEL_RE.match(label):
        raise StoreError(f"backup label {label!r} must be lower-case letters, digits and '-'")
    if not os.path.isdir(store_dir):
        raise StoreError(f"there is no store directory {store_dir} to back up")
    os.makedirs(backup_dir, mode=0o700, exist_ok=True)
    name = f"{utc_stamp(now)}-{label}"
    final = os.path.join(backup_dir, name)
    partial = os.path.join(backup_dir, f".{name}.partial")
    if os.path.exists(final):
        raise StoreError(f"backup folder {final} exists already; wait a second and run it again")
    shutil.rmtree(partial, ignore_errors=True)
    previous = next((b["manifest"] for b in reversed(list_backups(backup_dir)) if b["manifest"]), None)
    old_umask = os.umask(0o077)
    try:
        os.mkdir(partial, 0o700)
        if db:
            try:
                facts = db.dump(partial)
            except db.Error as error:
                raise StoreError(str(error)) from error
            revision, db_counts, auth = facts["schema_revision"], facts["counts"], facts["auth"]
        else:
            revision, db_counts, auth = _snapshot_sqlite(store_dir, partial)
        skipped = []
        _copy_artifacts(store_dir, partial, s3, skipped)
        for deployment in (COMPOSE, STACK):
            source = os.path.join(store_dir, deployment)
            if os.path.islink(source):
                skipped.append(f"{deployment} in {store_dir} (a symbolic link)")
            elif os.path.isfile(source):
                copy_file(source, os.path.join(partial, deployment))
        _make_private(partial)
        counts = dict(db_counts or dict.fromkeys((*TRACKING_TABLES, "runs_active"), 0))
        counts["artifacts"] = count_files(os.path.join(partial, ARTIFACTS))
        files = _files(partial)
        manifest = {
            "format": FORMAT,
            "name": name,
            "created": (now or datetime.datetime.now(datetime.timezone.utc)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "label": label,
            "backend": db.NAME if db else "sqlite",
            "artifacts_store": "s3" if s3 else "local",
            "mlflow_version": mlflow_version,
            "schema_revision": revision,
            "integrity_check": db.INTEGRITY if db else "ok",
            "counts": counts,
            "bytes": sum(entry["size"] for entry in files.values()),
            "anomaly": anomaly(previous, counts),
            "files": files,
        }
        if auth:
            manifest["auth"] = auth
        with open(os.path.join(partial, MANIFEST), "w") as handle:
            json.dump(manifest, handle, indent=1, sort_keys=True)
        os.rename(partial, final)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    finally:
        os.umask(old_umask)
    summary = {key: value for key, value in manifest.items() if key != "files"}
    summary["path"] = final
    summary["skipped"] = skipped
    return summary


def retention(backup_dir, keep, protect=()):
    """The backups to delete so that the newest `keep` remain, and why the others are kept.

    Never deleted: a protected path, a backup marked with an anomaly (it records the accident),
    and the newest backup holding data that is not marked (the last good copy before it)."""
    backups = list_backups(backup_dir)
    protected = {os.path.normpath(path) for path in protect}
    last_good = None
    for backup in reversed(backups):
        manifest = backup["manifest"]
        if manifest and not manifest.get("anomaly") and _active_runs(manifest) > 0:
            last_good = backup["path"]
            break
    delete, kept = [], {}
    for backup in backups[: max(len(backups) - keep, 0)]:
        manifest = backup["manifest"] or {}
        if backup["path"] in protected:
            kept[backup["name"]] = "protected"
        elif manifest.get("anomaly"):
            kept[backup["name"]] = f"marked: {manifest['anomaly']}"
        elif backup["path"] == last_good:
            kept[backup["name"]] = "the newest backup holding data"
        else:
            delete.append(backup["path"])
    return delete, kept


def verify_backup(path, known_revisions=None, head=None, image_version=None, db=None, backend=None):
    """Check a backup before it is used; problems are returned, not raised, so callers can name the variable.

    backend: the configured backend (sqlite, or a helper's NAME), which the backup must have been taken from.
    db: the helper of that database, which reads the dump (PostgreSQL's: its table of contents, pg_restore --list)."""
    result = {"ok": False, "problems": [], "path": path, "image_version": image_version}
    problems = result["problems"]
    if not os.path.isfile(os.path.join(path, MANIFEST)):
        problems.append(f"does not exist or holds no {MANIFEST}")
        return result
    problems += _path_problems(path)
    if problems:
        return result
    manifest = read_manifest(path)
    if manifest is None or not isinstance(manifest.get("files"), dict):
        problems.append(f"has an unreadable {MANIFEST}")
        return result
    result.update({key: value for key, value in manifest.items() if key != "files"})
    # Before any file is read: a link or a name with '..' would make root read elsewhere.
    problems += trust_problems(path, manifest)
    if problems:
        return result
    for name, entry in sorted(manifest["files"].items()):
        file_path = os.path.join(path, name)
        if not os.path.isfile(file_path):
            problems.append(f"misses {name}")
        elif not isinstance(entry, dict):
            problems.append(f"has no sha256 for {name} in its {MANIFEST}")
        elif sha256(file_path) != entry.get("sha256"):
            problems.append(f"has a changed {name} (sha256 differs from the manifest)")
    kind = result["backend"] = manifest.get("backend") or "sqlite"
    if backend and kind != backend:
        problems.append(f"was taken from a {kind} store, not from a {backend} one")
    dumps = {helper.NAME: helper.DUMP for helper in DATABASE_HELPERS.values()}
    if kind == "sqlite" and DB not in manifest["files"]:
        problems.append(f"has no {DB} in its manifest")
    elif kind != "sqlite" and kind not in dumps:
        problems.append(f"was taken from a {kind} store, which this collection does not know")
    elif kind in dumps and dumps[kind] not in manifest["files"]:
        problems.append(f"has no {dumps[kind]} in its manifest")
    if problems:
        return result
    if db and kind == db.NAME:
        problems += db.check_dump(path)
    for name in DATABASES:
        if name in manifest["files"] and manifest["files"][name]["size"] > 0:
            conn = sqlite3.connect(f"file:{os.path.join(path, name)}?mode=ro&immutable=1", uri=True)
            try:
                found = integrity(conn)
            except sqlite3.Error as error:
                found = [str(error)]
            finally:
                conn.close()
            if found != ["ok"]:
                problems.append(f"has a {name} that fails integrity_check: {found[:3]}")
    revision = manifest.get("schema_revision")
    if known_revisions is not None:
        known = revision is None or revision in known_revisions
        result["schema_known"] = known
        result["needs_upgrade"] = revision is not None and revision != head
        if not known:
            problems.append(
                f"holds schema revision {revision} written by MLflow {manifest.get('mlflow_version')}, "
                f"newer than MLflow {image_version} knows (its newest is {head})"
            )
    result["ok"] = not problems
    return result
