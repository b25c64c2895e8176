# -*- coding: utf-8 -*-
# Copyright (c) mlops.mlflow developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The one-pass host read behind mlflow_server_info: what it makes of each tool's answer, and
what it reports when a tool is missing. The tools are stand-ins that answer as the real ones do
(dpkg-query, systemctl show, docker inspect, iptables -C); files are real."""

from __future__ import annotations

import hashlib
import json
import os

from ansible_collections.mlops.mlflow.plugins.module_utils import mlflow_host as host

IMAGE_ID = "sha256:" + "ab" * 32


class Tools:
    """Answers by command; records what was asked."""

    def __init__(self, answers, missing=()):
        self.answers = answers
        self.missing = set(missing)
        self.asked = []

    def run(self, argv):
        self.asked.append(argv)
        for prefix, answer in self.answers.items():
            if tuple(argv[: len(prefix)]) == prefix:
                return answer
        return 1, "", "not found"

    def which(self, name):
        return None if name in self.missing else f"/usr/bin/{name}"


def test_missing_packages_are_those_dpkg_does_not_list_as_installed():
    tools = Tools(
        {("dpkg-query",): (1, "docker.io ii \niptables rc \n", "dpkg-query: no packages found matching docker-ce\n")}
    )
    assert host.packages_missing(["docker.io", "iptables", "docker-ce"], tools.run, tools.which) == [
        "iptables",
        "docker-ce",
    ]
    no_dpkg = Tools({}, missing={"dpkg-query"})
    assert host.packages_missing(["docker.io"], no_dpkg.run, no_dpkg.which) == ["docker.io"]


def test_units_read_from_systemctl_show():
    answer = "LoadState=loaded\nActiveState=active\nUnitFileState=enabled\n"
    tools = Tools({("systemctl", "show"): (0, answer, "")})
    assert host.units(["docker.service"], tools.run, tools.which) == {
        "docker.service": {"exists": True, "active": True, "enabled": True}
    }
    gone = Tools({("systemctl", "show"): (0, "LoadState=not-found\nActiveState=inactive\nUnitFileState=\n", "")})
    assert host.units(["mlflow-gc.timer"], gone.run, gone.which)["mlflow-gc.timer"] == {
        "exists": False,
        "active": False,
        "enabled": False,
    }


def test_container_state_image_and_health():
    state = {"Running": True, "Health": {"Status": "healthy"}}
    tools = Tools({("docker", "inspect"): (0, json.dumps(state) + "|" + IMAGE_ID + "\n", "")})
    assert host.container("mlflow-server", tools.run, tools.which) == {
        "exists": True,
        "running": True,
        "health": "healthy",
        "image_id": IMAGE_ID,
    }
    none = Tools({})
    assert host.container("mlflow-server", none.run, none.which)["exists"] is False


def test_network_subnets_and_bridge_name():
    answer = '[{"Subnet":"172.31.253.0/24","Gateway":"172.31.253.1"}]|{"com.docker.network.bridge.name":"mlflow0"}\n'
    tools = Tools({("docker", "network", "inspect"): (0, answer, "")})
    assert host.network("mlflow_default", tools.run, tools.which) == {
        "exists": True,
        "subnets": ["172.31.253.0/24"],
        "bridge": "mlflow0",
    }
    # A network Compose made before the subnet was pinned: Docker's choice, no bridge name.
    tools = Tools({("docker", "network", "inspect"): (0, '[{"Subnet":"172.19.0.0/16"}]|{}\n', "")})
    assert host.network("mlflow_default", tools.run, tools.which)["bridge"] is None
    none = Tools({})
    assert host.network("mlflow_default", none.run, none.which) == {"exists": False, "subnets": [], "bridge": None}


def test_iptables_rules_all_present_one_absent_or_unknown():
    rules = ["PREROUTING -d 127.0.0.0/8 ! -i lo -j DROP", "PREROUTING -d 172.31.253.0/24 ! -i mlflow0 -j DROP"]
    for rc, expected in ((0, True), (1, False), (2, None)):
        tools = Tools({("iptables",): (rc, "", "")})
        assert host.iptables_rules(rules, tools.run, tools.which) is expected
    # One rule missing is enough to say the guard is not in place.
    tools = Tools({("iptables", "-t", "raw", "-C", "PREROUTING", "-d", "127.0.0.0/8"): (0, "", "")})
    assert host.iptables_rules(rules, tools.run, tools.which) is False
    tools = Tools({}, missing={"iptables"})
    assert host.iptables_rules(rules, tools.run, tools.which) is None
    assert host.iptables_rules([], Tools({}).run, Tools({}).which) is None
    tools = Tools({("iptables",): (0, "", "")})
    host.iptables_rules(rules, tools.run, tools.which)
    check = ["iptables", "-t", "raw", "-C", "PREROUTING", "-d", "127.0.0.0/8", "!", "-i", "lo", "-j", "DROP"]
    assert check in tools.asked


def test_unprivileged_port_start_as_the_kernel_says(tmp_path):
    sysctl = tmp_path / "ip_unprivileged_port_start"
    sysctl.write_text("1024\n")
    assert host.unprivileged_port_start(str(sysctl)) == 1024
    assert host.unprivileged_port_start(str(tmp_path / "missing")) is None


def test_files_mode_owner_and_the_sha1_ansible_uses(tmp_path):
    path = tmp_path / "docker-compose.yml"
    path.write_text("services: {}\n")
    os.chmod(path, 0o600)
    found = host.file_facts([str(path), str(tmp_path / "missing")])
    assert found[str(path)] == {
        "exists": True,
        "mode": "0600",
        "owner": "root" if os.getuid() == 0 else found[str(path)]["owner"],
        "sha1": hashlib.sha1(b"services: {}\n").hexdigest(),
    }
    assert found[str(tmp_path / "missing")]["exists"] is False
    assert host.file_facts([str(tmp_path)])[str(tmp_path)]["sha1"] is None


def test_a_database_is_stat_ed_and_never_read(tmp_path, monkeypatch):
    database = tmp_path / "mlflow.db"
    database.write_bytes(b"SQLite format 3\x00" + b"\x01" * 4096)
    os.chmod(database, 0o666)
    opened = []
    real_open = open
    monkeypatch.setattr(
        host, "open", lambda path, *a, **k: opened.append(path) or real_open(path, *a, **k), raising=False
    )
    found = host.file_facts([], stat_paths=[str(database)])[str(database)]
    assert found["exists"] is True and found["mode"] == "0666" and found["sha1"] is None
    assert opened == []
    # The control: the same file as one of the files is read, through the open watched above.
    assert host.file_facts([str(database)])[str(database)]["sha1"] == hashlib.sha1(database.read_bytes()).hexdigest()
    assert opened == [str(database)]


def test_a_secret_files_digest_is_keyed_and_shows_nothing_to_check_guesses_against(tmp_path):
    secret = tmp_path / "admin_password"
    secret.write_text("first-Admin-secret-7")
    key = "a-random-key-for-this-run"
    found = host.file_facts([], [str(secret)], key)[str(secret)]["sha1"]
    assert found == hashlib.sha1(key.encode() + b"first-Admin-secret-7").hexdigest()
    # The control: the plain digest, which a guess could be checked against, is what it replaces.
    plain = host.file_facts([str(secret)])[str(secret)]["sha1"]
    assert plain == hashlib.sha1(b"first-Admin-secret-7").hexdigest() and found != plain


def test_image_facts_come_from_the_cache_of_that_image_id(tmp_path):
    (tmp_path / f"{IMAGE_ID[7:]}.v3.json").write_text('{"version": "3.17.2"}')
    assert host.image_facts(str(tmp_path), IMAGE_ID) == {"version": "3.17.2"}
    assert host.image_facts(str(tmp_path), "sha256:" + "cd" * 32) is None
    assert host.image_facts(str(tmp_path), None) is None


def test_os_release_names_the_distribution_as_ansible_does(tmp_path):
    release = tmp_path / "os-release"
    release.write_text(
        'PRETTY_NAME="Debian GNU/Linux 13 (trixie)"\nNAME="Debian GNU/Linux"\n'
        'VERSION_ID="13"\nVERSION_CODENAME=trixie\n'
    )
    assert host.os_release(str(release)) == {"distribution": "Debian", "major_version": "13", "codename": "trixie"}
    release.write_text('NAME="Ubuntu"\nVERSION_ID="24.04"\nVERSION_CODENAME=noble\n')
    assert host.os_release(str(release)) == {"distribution": "Ubuntu", "major_version": "24", "codename": "noble"}


def test_read_host_puts_it_all_together(tmp_path):
    tools = Tools(
        {
            ("docker", "compose"): (0, "v2.26.1\n", ""),
            ("docker", "image"): (0, IMAGE_ID + "\n", ""),
            ("dpkg-query",): (0, "docker.io ii \n", ""),
        }
    )
    params = {"store_dir": str(tmp_path), "packages": ["docker.io"], "image": "mlops/mlflow:3.17.2", "files": []}
    found = host.read_host(params, tools.run, tools.which)
    assert found["compose_version"] == "2.26.1"
    assert found["image_id"] == IMAGE_ID
    assert found["packages_missing"] == []
    assert found["store"]["exists"] is True
    assert found["os"]["cpus"] >= 1
