# -*- coding: utf-8 -*-
# Copyright (c) mlops.mlflow developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""How the store modules' tests run a module: the way Ansible runs it (JSON args in, JSON out)."""

from __future__ import annotations

import json

import pytest
from ansible.module_utils.testing import patch_module_args


def run(module, capsys, **args):
    with patch_module_args(args):
        with pytest.raises(SystemExit) as exit_info:
            module.main()
    return exit_info.value.code, json.loads(capsys.readouterr().out)
