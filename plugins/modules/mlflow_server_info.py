#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) mlops.mlflow developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: mlflow_server_info
short_description: Read everything the server role checks on a host, in one run
version_added: 0.2.0
description:
  - Runs on the MLflow server host and changes nothing. It reports the operating system, the CPUs and
    memory, which of O(packages) are missing, the state of O(units), the Compose v2 version, the id of
    O(image), what the role learned about that image before (from O(cache_dir)), the O(container), the
    O(network), whether all O(iptables_rules) are in place, the lowest port any account may listen on, the
    mode, owner and SHA-1 of O(files), and the store (as M(mlops.mlflow.mlflow_store_info) reports it).
  - The server role reads the host with it once, then skips every step that is already right, so a run
    that changes nothing costs about as much as checking does.
author:
  - mlops.mlflow developers (@mlops)
extends_documentation_fragment:
  - mlops.mlflow.attributes
  - mlops.mlflow.attributes.info_module
  - mlops.mlflow.mlflow_store.store_dir
options:
  packages:
    description: Debian packages to look for (with C(dpkg-query)).
    type: list
    elements: str
    default: []
  units:
    description: systemd units to read (C(ActiveState), C(UnitFileState), C(LoadState)).
    type: list
    elements: str
    default: []
  image:
    description: An image reference to look up in the local Docker engine.
    type: str
  cache_dir:
    description: Where the role keeps what it learned about images, as C(<image id>.v3.json).
    type: path
  container:
    description: A container name to inspect.
    type: str
  network:
    description: A Docker network name to inspect.
    type: str
    version_added: 0.5.0
  iptables_rules:
    description: Rules of the C(raw) table to check with C(iptables -t raw -C).
    type: list
    elements: str
    default: []
    version_added: 0.5.0
  files:
    description: Files to read the mode, owner and SHA-1 of.
    type: list
    elements: path
    default: []
  stat_files:
    description:
      - Files to read the mode and owner of, reported with O(files), without reading their content, so their
        C(sha1) is V(null). For the databases, which may be large, and whose content the role never compares.
    type: list
    elements: path
    default: []
    version_added: 0.6.0
  secret_files:
    description:
      - Files that hold secrets, read like O(files) and reported with them. Their C(sha1) is the SHA-1 of
        O(digest_key) followed by the content, so the result, which Ansible shows with C(-v), holds no
        digest that could be checked against guesses of a secret offline.
      - The caller compares it with the SHA-1 of the key followed by the content it expects.
    type: list
    elements: path
    default: []
    version_added: 0.5.0
  digest_key:
    description:
      - A random value, new for each run, that keys the digests of O(secret_files). Required with them.
    type: str
    version_added: 0.5.0
seealso:
  - module: mlops.mlflow.mlflow_store_info
"""

EXAMPLES = r"""
- name: Read the host
  mlops.mlflow.mlflow_server_info:
    store_dir: /opt/mlflow
    packages: [docker.io, iptables]
    units: [docker.service]
    image: ghcr.io/mlflow/mlflow:v3.17.2
    container: mlflow-server
    files: [/opt/mlflow/docker-compose.yml]
  register: host
"""

RETURN = r"""
os:
  description: C(distribution) and C(major_version) from C(/etc/os-release), C(cpus), C(memory_mb).
  returned: always
  type: dict
  sample: {"distribution": "Debian", "major_version": "13", "cpus": 2, "memory_mb": 24000}
packages_missing:
  description: Those of O(packages) that are not installed.
  returned: always
  type: list
  elements: str
units:
  description: Per unit, C(exists), C(active) and C(enabled).
  returned: always
  type: dict
  sample: {"docker.service": {"exists": true, "active": true, "enabled": true}}
compose_version:
  description: What C(docker compose version --short) says, or V(null).
  returned: always
  type: str
  sample: 2.26.1
image:
  description: O(image), as asked for.
  returned: always
  type: str
image_id:
  description: The id of O(image), or V(null) when the engine does not have it.
  returned: always
  type: str
image_facts:
  description: What the role learned about that image before, or V(null).
  returned: always
  type: dict
container:
  description: C(exists), C(running), C(health) and C(image_id) of O(container).
  returned: always
  type: dict
network:
  description:
    - C(exists), C(subnets) (a list) and C(bridge) of O(network).
    - C(bridge) is the bridge's name when one was given, else V(null).
  returned: always
  type: dict
  sample: {"exists": true, "subnets": ["172.31.253.0/24"], "bridge": "mlflow0"}
  version_added: 0.5.0
iptables_rules:
  description:
    - Whether every rule of O(iptables_rules) is in place.
    - V(null) when iptables cannot be run or none was asked for.
  returned: always
  type: bool
  version_added: 0.5.0
unprivileged_port_start:
  description:
    - The host's C(net.ipv4.ip_unprivileged_port_start). Only root may listen on a port below it.
    - V(null) where the kernel does not say (before Linux 4.11, or not Linux).
  returned: always
  type: int
  sample: 1024
  version_added: 0.5.0
files:
  description:
    - Per file, C(exists), C(mode), C(owner) and C(sha1).
    - For O(secret_files), C(sha1) covers O(digest_key) first, then the content.
    - For O(stat_files), C(sha1) is V(null).
  returned: always
  type: dict
store:
  description: The store, as M(mlops.mlflow.mlflow_store_info) reports it.
  returned: always
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.mlops.mlflow.plugins.module_utils.mlflow_host import read_host  # noqa: E402


def main():
    module = AnsibleModule(
        argument_spec=dict(
            store_dir=dict(type="path", required=True),
            packages=dict(type="list", elements="str", default=[]),
            units=dict(type="list", elements="str", default=[]),
            image=dict(type="str"),
            cache_dir=dict(type="path"),
            container=dict(type="str"),
            network=dict(type="str"),
            iptables_rules=dict(type="list", elements="str", default=[]),
            files=dict(type="list", elements="path", default=[]),
            stat_files=dict(type="list", elements="path", default=[]),
            secret_files=dict(type="list", elements="path", default=[], no_log=False),
            digest_key=dict(type="str", no_log=True),
        ),
        supports_check_mode=True,
    )

    def run(argv):
        rc, out, err = module.run_command(argv)
        return rc, out, err

    if module.params["secret_files"] and not module.params["digest_key"]:
        module.fail_json(msg="digest_key is required with secret_files: give a random value, new for each run.")
    module.exit_json(changed=False, **read_host(module.params, run, module.get_bin_path))


if __name__ == "__main__":
    main()
