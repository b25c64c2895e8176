# -*- coding: utf-8 -*-
# Copyright (c) mlops.mlflow developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:
    # What each attribute means. Every module adds the named fragments below that say how it supports
    # them (info_module; or changes with idempotent or not_idempotent), and states only details of its own.
    DOCUMENTATION = r"""
attributes:
  check_mode:
    description: Can run in C(check_mode) and return changed status prediction without modifying target.
  diff_mode:
    description:
      - Will return details on what has changed (or possibly needs changing in C(check_mode)), when in diff mode.
  idempotent:
    description:
      - When run twice in a row outside check mode, with the same arguments, the second invocation indicates no change.
"""

    # A module that only reads.
    INFO_MODULE = r"""
attributes:
  check_mode:
    support: full
    details:
      - This action does not modify state.
  diff_mode:
    support: N/A
    details:
      - This action does not modify state.
  idempotent:
    support: full
    details:
      - This action does not modify state.
"""

    # A module that changes the host: check mode predicts the change, and there is no diff.
    CHANGES = r"""
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
"""

    # Used with CHANGES: a module that changes only what differs from its arguments.
    IDEMPOTENT = r"""
attributes:
  idempotent:
    support: full
"""

    # Used with CHANGES: a module that acts on every run (a backup, a restore); its details say why.
    NOT_IDEMPOTENT = r"""
attributes:
  idempotent:
    support: none
"""
