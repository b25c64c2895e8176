#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) mlops.mlflow developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: mlflow_image
short_description: Learn what an MLflow image knows and has, once per image id
version_added: 0.6.0
description:
  - Looks up O(image) in the local Docker engine. When the engine has it, returns what the role learned
    about it before, from C(<image id>.v3.json) in O(cache_dir).
  - When nothing was learned about that image id yet and O(probe) is given, runs O(probe) with the image's
    Python in a one-off container without a network (a second or more), keeps its answer in O(cache_dir)
    and returns it. So the container runs once per image id.
  - The answer is what the server role's C(files/mlflow_image_info.py) prints, one line of JSON with the
    MLflow version, the database schema revisions it knows, and the Python packages it has.
author:
  - mlops.mlflow developers (@mlops)
extends_documentation_fragment:
  - mlops.mlflow.attributes
  - mlops.mlflow.attributes.changes
  - mlops.mlflow.attributes.idempotent
attributes:
  check_mode:
    details:
      - In check mode the probe still runs (it only reads, and its container is removed), and its answer is
        returned; it is not kept.
options:
  image:
    description: The image reference to look up, as the engine names it.
    type: str
    required: true
  cache_dir:
    description:
      - Where the answers are kept, as C(<image id without sha256:>.v3.json), mode C(0600).
      - Created with mode C(0700) when missing. It should be a directory only root can write to.
    type: path
    required: true
  probe:
    description:
      - The text of a Python script that prints one line of JSON last. Without it the module only looks up
        the image and what was kept about it.
    type: str
notes:
  - Needs the C(docker) command line on the host.
seealso:
  - module: mlops.mlflow.mlflow_server_info
"""

EXAMPLES = r"""
- name: Ask the image what it knows and has
  mlops.mlflow.mlflow_image:
    image: ghcr.io/mlflow/mlflow:v3.17.2-full
    cache_dir: /var/cache/mlops.mlflow
    probe: "{{ lookup('ansible.builtin.file', 'mlflow_image_info.py') }}"
  register: image

- name: Show the MLflow version in the image
  ansible.builtin.debug:
    msg: "{{ image.image_facts.version }}"
"""

RETURN = r"""
image:
  description: O(image), as asked for.
  returned: always
  type: str
  sample: ghcr.io/mlflow/mlflow:v3.17.2-full
image_id:
  description: The id of O(image), or V(null) when the engine does not have it (or there is no engine).
  returned: always
  type: str
  sample: sha256:4f3c...
image_facts:
  description:
    - The answer of O(probe) for this image id, kept or new; V(null) when the image is missing, or nothing was
      kept and no O(probe) was given.
  returned: always
  type: dict
  sample: {"version": "3.17.2", "tracking": {"head": "1b5f0d9ad7c1", "known": ["..."]}, "auth": null,
           "extras": {"auth": true, "postgresql": true, "s3": true, "metrics": true}}
asked:
  description: Whether the probe ran in this call.
  returned: always
  type: bool
"""

import json  # noqa: E402
import os  # noqa: E402
import tempfile  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.mlops.mlflow.plugins.module_utils.mlflow_host import docker, image_facts  # noqa: E402

FACTS_FILE = "{0}.v3.json"


def ask(module, image):
    """Run the probe in a one-off container of the image; its last line of output, as JSON."""
    with tempfile.TemporaryDirectory() as scratch:
        script = os.path.join(scratch, "mlflow_image_info.py")
        with open(script, "w") as handle:
            handle.write(module.params["probe"])
        os.chmod(script, 0o644)
        argv = [
            "docker",
            "run",
            "--rm",
            "--network",
            "none",
            "--volume",
            f"{script}:/mlflow_image_info.py:ro",
            image,
            "python",
            "/mlflow_image_info.py",
        ]
        rc, out, err = module.run_command(argv)
    lines = out.strip().splitlines()
    try:
        if rc != 0 or not lines:
            raise ValueError(err.strip() or f"exit code {rc}, no output")
        return json.loads(lines[-1])
    except ValueError as error:
        module.fail_json(
            msg=f"image {image} did not say what it knows and has ({str(error)[-600:]}). Is it an MLflow image with "
            "Python on its PATH? Use the official ghcr.io/mlflow/mlflow image, or one built from images/mlflow-full."
        )


def keep(cache_dir, image_id, facts):
    """Write the answer next to the others, whole or not at all."""
    os.makedirs(cache_dir, mode=0o700, exist_ok=True)
    handle, partial = tempfile.mkstemp(dir=cache_dir, prefix=".image-")
    with os.fdopen(handle, "w") as out:
        out.write(json.dumps(facts, sort_keys=True) + "\n")
    os.chmod(partial, 0o600)
    os.replace(partial, os.path.join(cache_dir, FACTS_FILE.format(image_id[7:])))


def main():
    module = AnsibleModule(
        argument_spec=dict(
            image=dict(type="str", required=True),
            cache_dir=dict(type="path", required=True),
            probe=dict(type="str"),
        ),
        supports_check_mode=True,
    )
    image, cache_dir = module.params["image"], module.params["cache_dir"]

    image_id = (
        docker(["image", "inspect", "--format", "{{.Id}}", image], module.run_command, module.get_bin_path) or None
    )
    facts = image_facts(cache_dir, image_id)
    asked = bool(image_id and facts is None and module.params["probe"])
    if asked:
        facts = ask(module, image)
        if not module.check_mode:
            keep(cache_dir, image_id, facts)
    module.exit_json(changed=asked, image=image, image_id=image_id, image_facts=facts, asked=asked)


if __name__ == "__main__":
    main()
