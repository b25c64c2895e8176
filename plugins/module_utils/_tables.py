# -*- coding: utf-8 -*-
# Copyright (c) mlops.mlflow developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Note that this module util is **PRIVATE** to the collection. It can have breaking changes at any time.
# Do not use this from other collections or standalone plugins/modules!

"""The MLflow tables whose rows a backup counts and a restore compares, for SQLite and every
database helper alike. Names come from here, never from input. A table an MLflow version does not
have counts 0, so one list serves MLflow 2 and 3.

MLflow 3's basic-auth app keeps its roles, their grants, who holds them and the workspaces' own
grants beside the legacy per-experiment permissions; the tracking database keeps the workspaces."""

from __future__ import annotations

TRACKING_TABLES = ("experiments", "runs", "metrics", "params", "tags", "workspaces")
AUTH_TABLES = (
    "users",
    "experiment_permissions",
    "registered_model_permissions",
    "roles",
    "role_permissions",
    "user_role_assignments",
    "workspace_permissions",
)
