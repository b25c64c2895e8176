#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) mlops.mlflow developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: mlflow_client_info
short_description: Read what the client role writes on a member's PC, in one run
version_added: 0.6.0
description:
  - Runs on a member's PC, as the member, and changes nothing. It reports the type, mode, owner, group
    and SHA-1 of O(files), and whether each file of O(blocks) holds exactly that block between its
    markers, as C(ansible.builtin.blockinfile) would leave it.
  - The client role reads the PC with it once, then skips every step that is already right, so a run
    for a member whose set-up has not changed costs one module run instead of one per file.
  - A link is reported as a link and not followed, and what cannot be read is reported as missing (or
    without its SHA-1), so the role's own step runs for it and decides. The read itself never fails.
author:
  - mlops.mlflow developers (@mlops)
extends_documentation_fragment:
  - mlops.mlflow.attributes
  - mlops.mlflow.attributes.info_module
options:
  files:
    description: Paths to read the type, mode, owner, group and (for regular files) SHA-1 of.
    type: list
    elements: path
    default: []
  blocks:
    description: Blocks to look for, each in a file, as C(ansible.builtin.blockinfile) writes them.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: The file.
        type: path
        required: true
      marker:
        description: The marker line, with C({mark}) where C(BEGIN) and C(END) go.
        type: str
        required: true
      block:
        description: The block's text. Empty for a block to remove, as C(ansible.builtin.blockinfile) removes it.
        type: str
        required: true
seealso:
  - name: ansible.builtin.blockinfile
    description: What the client role writes the Host block with.
    link: https://docs.ansible.com/ansible/latest/collections/ansible/builtin/blockinfile_module.html
"""

EXAMPLES = r"""
- name: Read the member's ssh config, its folders and the helper
  mlops.mlflow.mlflow_client_info:
    files: [/home/alice/.ssh, /home/alice/.ssh/config, /home/alice/.local/bin/mlflow-tunnel]
    blocks:
      - path: /home/alice/.ssh/config
        marker: "# {mark} mlops.mlflow.client Host mlflowserver"
        block: "{{ lookup('ansible.builtin.template', 'ssh_config_block.j2') }}"
  register: pc
"""

RETURN = r"""
files:
  description:
    - Per path of O(files), C(type) (V(file), V(directory), V(link), V(other), or V(null) when there is
      nothing), C(mode), C(owner), C(gid) and C(sha1) (regular files only).
  returned: always
  type: dict
  sample: {"/home/alice/.ssh": {"type": "directory", "mode": "0700", "owner": "alice", "gid": 1000, "sha1": null}}
blocks:
  description:
    - Per entry of O(blocks), in order, whether its file is a regular file that holds exactly that block
      between its markers, so that C(ansible.builtin.blockinfile) would change nothing in it.
  returned: always
  type: list
  elements: bool
  sample: [true]
"""

import hashlib  # noqa: E402
import os  # noqa: E402
import pwd  # noqa: E402
import stat  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

NOTHING = {"type": None, "mode": None, "owner": None, "gid": None, "sha1": None}


def file_facts(path):
    """Type, mode, owner, gid and SHA-1 of path, without following a link."""
    try:
        found = os.lstat(path)
    except OSError:
        return dict(NOTHING)
    kind = (
        "link"
        if stat.S_ISLNK(found.st_mode)
        else "directory"
        if stat.S_ISDIR(found.st_mode)
        else "file"
        if stat.S_ISREG(found.st_mode)
        else "other"
    )
    digest = None
    if kind == "file":
        sha = hashlib.sha1()  # noqa: S324 - compared with Ansible's own checksums, not for security
        try:
            with open(path, "rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    sha.update(chunk)
            digest = sha.hexdigest()
        except OSError:
            # Unreadable: no digest, so the step that writes it runs and says why it cannot.
            pass
    try:
        owner = pwd.getpwuid(found.st_uid).pw_name
    except KeyError:
        owner = str(found.st_uid)
    return {"type": kind, "mode": f"{found.st_mode & 0o7777:04o}", "owner": owner, "gid": found.st_gid, "sha1": digest}


def holds_block(path, marker, block):
    """Whether blockinfile, given this marker and block, would leave the file at path as it is: the
    last BEGIN and END marker lines, in that order, enclose exactly the block's lines. An empty block
    is one to remove: held where the file is missing, or holds no pair of marker lines."""
    if not block and not os.path.lexists(path):
        return True
    if not os.path.isfile(path) or os.path.islink(path):
        return False
    try:
        with open(path, "rb") as handle:
            lines = handle.read().splitlines(True)
    except OSError:
        return False
    newline = os.linesep.encode()
    begin = marker.replace("{mark}", "BEGIN").encode() + newline
    end = marker.replace("{mark}", "END").encode() + newline
    if not block:
        # blockinfile finds a marker on the last line without its newline too.
        found = {line.rstrip(newline) for line in lines}
        return not (begin.rstrip(newline) in found and end.rstrip(newline) in found)
    text = block.encode()
    if text and not text.endswith(newline):
        text += newline
    first = last = None
    for index, line in enumerate(lines):
        if line == begin:
            first = index
        if line == end:
            last = index
    if first is None or last is None or first > last:
        return False
    return lines[first : last + 1] == [begin, *text.splitlines(True), end]


def main():
    module = AnsibleModule(
        argument_spec=dict(
            files=dict(type="list", elements="path", default=[]),
            blocks=dict(
                type="list",
                elements="dict",
                default=[],
                options=dict(
                    path=dict(type="path", required=True),
                    marker=dict(type="str", required=True),
                    block=dict(type="str", required=True),
                ),
            ),
        ),
        supports_check_mode=True,
    )
    files = {path: file_facts(path) for path in module.params["files"]}
    blocks = [holds_block(entry["path"], entry["marker"], entry["block"]) for entry in module.params["blocks"]]
    module.exit_json(changed=False, files=files, blocks=blocks)


if __name__ == "__main__":
    main()
