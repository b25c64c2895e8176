# -*- coding: utf-8 -*-
# Copyright (c) mlops.mlflow developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What the server role checks on a host, read in one pass (mlflow_server_info).

Every reader takes `run(argv) -> (rc, stdout, stderr)` and `which(name) -> path or None`,
so the unit tests drive them with stand-ins and the module with Ansible's run_command."""

from __future__ import annotations

import hashlib
import json
import os
import pwd

from ansible_collections.mlops.mlflow.plugins.module_utils._store_read import store_info


def os_release(path="/etc/os-release"):
    values = {}
    try:
        with open(path) as handle:
            for line in handle:
                name, value = line.strip().partition("=")[::2]
                values[name] = value.strip('"')
    except OSError:
        pass
    # As Ansible's facts name them: Debian 13 (trixie), Ubuntu 24 (noble).
    return {
        "distribution": values["NAME"].split()[0] if values.get("NAME") else None,
        "major_version": (values.get("VERSION_ID") or "").split(".")[0] or None,
        "codename": values.get("VERSION_CODENAME") or None,
    }


def memory_mb(path="/proc/meminfo"):
    try:
        with open(path) as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def packages_missing(packages, run, which):
    if not packages:
        return []
    if not which("dpkg-query"):
        return list(packages)
    _rc, out, _err = run(["dpkg-query", "-W", "-f", "${Package} ${db:Status-Abbrev}\n", *packages])
    installed = {
        line.split()[0] for line in out.splitlines() if len(line.split()) > 1 and line.split()[1].startswith("ii")
    }
    return [name for name in packages if name not in installed]


def units(names, run, which):
    found = {}
    if not names:
        return found
    if not which("systemctl"):
        return {name: {"exists": False, "active": False, "enabled": False} for name in names}
    for name in names:
        _rc, out, _err = run(["systemctl", "show", "-p", "LoadState,ActiveState,UnitFileState", name])
        props = dict(line.partition("=")[::2] for line in out.splitlines() if "=" in line)
        found[name] = {
            "exists": props.get("LoadState") == "loaded",
            "active": props.get("ActiveState") == "active",
            "enabled": props.get("UnitFileState") == "enabled",
        }
    return found


def docker(argv, run, which):
    if not which("docker"):
        return None
    rc, out, _err = run(["docker", *argv])
    return out.strip() if rc == 0 else None


def container(name, run, which):
    if not name:
        return {"exists": False, "running": False, "health": None, "image_id": None}
    out = docker(["inspect", "--type", "container", "-f", "{{json .State}}|{{.Image}}", name], run, which)
    if not out:
        return {"exists": False, "running": False, "health": None, "image_id": None}
    state_json, image_id = out.rpartition("|")[::2]
    state = json.loads(state_json)
    return {
        "exists": True,
        "running": bool(state.get("Running")),
        "health": (state.get("Health") or {}).get("Status"),
        "image_id": image_id,
    }


def network(name, run, which):
    """A Docker network's IPv4/IPv6 subnets and its bridge's name (None when Docker chose it)."""
    if not name:
        return {"exists": False, "subnets": [], "bridge": None}
    out = docker(["network", "inspect", "-f", "{{json .IPAM.Config}}|{{json .Options}}", name], run, which)
    if not out:
        return {"exists": False, "subnets": [], "bridge": None}
    config_json, options_json = out.rpartition("|")[::2]
    config = json.loads(config_json) or []
    options = json.loads(options_json) or {}
    return {
        "exists": True,
        "subnets": [entry["Subnet"] for entry in config if entry.get("Subnet")],
        "bridge": options.get("com.docker.network.bridge.name"),
    }


def image_facts(cache_dir, image_id):
    if not cache_dir or not image_id:
        return None
    try:
        with open(os.path.join(cache_dir, f"{image_id[7:]}.v3.json")) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def iptables_rules(rules, run, which):
    """Whether every rule is in the raw table; None when iptables cannot tell (or none was asked for)."""
    if not rules or not which("iptables"):
        return None
    found = True
    for rule in rules:
        rc, _out, _err = run(["iptables", "-t", "raw", "-C", *rule.split()])
        if rc not in (0, 1):
            return None
        found = found and rc == 0
    return found


def unprivileged_port_start(path="/proc/sys/net/ipv4/ip_unprivileged_port_start"):
    """The lowest port any account may listen on (Linux 4.11+); None where the kernel does not say."""
    try:
        with open(path) as handle:
            return int(handle.read().strip())
    except (OSError, ValueError):
        return None


def file_facts(paths, secret_paths=(), digest_key=None, stat_paths=()):
    """Mode, owner and SHA-1 per path. For secret_paths the SHA-1 covers digest_key, then the
    content: a caller that knows the key can compare it with what it expects, and the digest,
    which Ansible shows with -v, cannot be checked against guesses of the secret. stat_paths get
    no SHA-1: their content is never read (the databases, which may be large)."""
    found = {}
    listed = list(paths) + [path for path in secret_paths if path not in paths]
    for path in listed + [path for path in stat_paths if path not in listed]:
        try:
            stat = os.stat(path)
        except OSError:
            found[path] = {"exists": False, "mode": None, "owner": None, "sha1": None}
            continue
        digest = None
        if os.path.isfile(path) and path in listed:
            sha = hashlib.sha1()  # noqa: S324 - compared with Ansible's own checksums, not for security
            if path in secret_paths:
                sha.update(digest_key.encode())
            with open(path, "rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    sha.update(chunk)
            digest = sha.hexdigest()
        try:
            owner = pwd.getpwuid(stat.st_uid).pw_name
        except KeyError:
            owner = str(stat.st_uid)
        found[path] = {"exists": True, "mode": f"{stat.st_mode & 0o7777:04o}", "owner": owner, "sha1": digest}
    return found


def read_host(params, run, which):
    compose = docker(["compose", "version", "--short"], run, which)
    image_id = (
        docker(["image", "inspect", "-f", "{{.Id}}", params["image"]], run, which) if params.get("image") else None
    )
    return {
        "os": {**os_release(), "cpus": os.cpu_count(), "memory_mb": memory_mb()},
        "packages_missing": packages_missing(params.get("packages") or [], run, which),
        "units": units(params.get("units") or [], run, which),
        "compose_version": compose.lstrip("v") if compose else None,
        "image": params.get("image"),
        "image_id": image_id,
        "image_facts": image_facts(params.get("cache_dir"), image_id),
        "container": container(params.get("container"), run, which),
        "network": network(params.get("network"), run, which),
        "iptables_rules": iptables_rules(params.get("iptables_rules") or [], run, which),
        "unprivileged_port_start": unprivileged_port_start(),
        "files": file_facts(
            params.get("files") or [],
            params.get("secret_files") or [],
            params.get("digest_key"),
            params.get("stat_files") or [],
        ),
        "store": store_info(params["store_dir"]),
    }
