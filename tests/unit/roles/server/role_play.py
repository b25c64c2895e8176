# -*- coding: utf-8 -*-
# Copyright (c) mlops.mlflow developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Run one of this folder's playbooks over pretend hosts on the local connection: the role's own
templates, files and vars, evaluated by Ansible itself, with each host's variables as a case."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

ROLE = Path(__file__).resolve().parents[4] / "roles" / "server"


def play(playbook, hosts, out):
    """ansible-playbook <this folder>/<playbook> on hosts ({name: vars}), with role_dir and out_dir."""
    inventory = out / "inventory.json"
    inventory.write_text(
        json.dumps({"all": {"hosts": {name: {"ansible_connection": "local", **case} for name, case in hosts.items()}}})
    )
    # Run from out, beside the role's templates/ and files/, where the role's lookups find them.
    shutil.copy(Path(__file__).with_name(playbook), out / playbook)
    for folder in ("templates", "files"):
        if not (out / folder).exists():
            (out / folder).symlink_to(ROLE / folder)
    command = shutil.which("ansible-playbook") or str(Path(sys.executable).with_name("ansible-playbook"))
    result = subprocess.run(
        [
            command,
            "-i",
            str(inventory),
            str(out / playbook),
            "-e",
            json.dumps({"role_dir": str(ROLE), "out_dir": str(out)}),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
