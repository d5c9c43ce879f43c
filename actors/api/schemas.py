"""The JSON Schemas of the account API: every param's and every result's, in one place.

Params are declared here once (`Param`s over the rule schemas of
core/rules.py) and used twice: `Signature.bind` validates calls against them
and `rpc.discover` publishes them (actors/api/params.py). Results are the
shapes of CONTRACT.md section 4; `COMPONENTS` holds the shared ones
(`Account`, `Plan`), referenced as `#/components/schemas/NAME`. `DESCRIPTIONS`
says what each method does beyond its summary, for the document too.
"""

from __future__ import annotations

from typing import Any

from actors.api.cursors import MAX_CURSOR_LEN
from actors.api.params import Param
from core.account import CLUSTER_STATES, STATUSES
from core.rules import EMAIL_SCHEMA, LABEL_SCHEMA, NAME_SCHEMA, PLAN_SCHEMA, SLUG_MAX, SLUG_SCHEMA

UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
UUID_SCHEMA: dict[str, Any] = {
    "type": "string", "minLength": 36, "maxLength": 36, "format": "uuid", "pattern": UUID_PATTERN,
}
CURSOR_SCHEMA: dict[str, Any] = {
    "type": ["string", "null"], "maxLength": MAX_CURSOR_LEN,
    "pattern": r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$",
}
WAIT_MAX = 60.0
WAIT_DEFAULT = 30.0

# method descriptions (the OpenRPC `description`, with the scope each needs) -------------------
DESCRIPTIONS = {
    "account.update": "Set any of name, owner_email and plan. A change is one legacy "
    "transaction and one event with the whole state at the next generation; a call that "
    "changes nothing answers the account unchanged, at the same generation. -32021 once the "
    "account is deleted.",
    "account.suspend": "Suspend: the namespaces stay, nothing in them is deleted, but the "
    "quota admits no new pods or services and all traffic is denied. Status `suspended` once "
    "every online cluster has observed it. Suspending a suspended account changes nothing.",
    "account.resume": "Resume a suspended account: its plan applies again. Resuming an "
    "account that is not suspended changes nothing.",
    "account.retry": "Clusters where the account is `failed` (or only `cluster`) try again "
    "now, with their backoff reset: the account moves to the next generation with the same "
    "state. When no such cluster is failed, nothing changes and the account is answered as "
    "it is. -32011 names an unknown cluster; -32021 once the account is deleted.",
    "account.wait": "Answer as soon as every online cluster (at least one) has observed the "
    "generation (default: the current one) - for a deleted account, as soon as every "
    "cluster reports it deleted - or when the timeout passes; a timeout is not an error: "
    "read `status`.",
    "account.list": "Accounts in creation order, cursor-paginated; with `status`, only those "
    "with that status now.",
    "plan.list": "The plans: each one's ResourceQuota spec.hard (`quota`) and LimitRange "
    "container defaults (`limits`), as a cluster gets them before its own overrides.",
}


# params -------------------------------------------------------------------------------------
ID = Param("id", UUID_SCHEMA, description="the account id")
NAME = Param("name", NAME_SCHEMA, description="display name")
OWNER_EMAIL = Param("owner_email", EMAIL_SCHEMA, description="the owner's email address")
SLUG = Param("slug", SLUG_SCHEMA, required=False,
             description="the account's DNS label; derived from name when not given")
PLAN = Param("plan", PLAN_SCHEMA, required=False, description="the plan; default standard")
GET_SLUG = Param("slug", LABEL_SCHEMA, required=False, description="the account's slug")
GET_ID = Param("id", UUID_SCHEMA, required=False, description="the account id")
EXACTLY_ID_OR_SLUG: dict[str, Any] = {
    "oneOf": [{"required": ["id"]}, {"required": ["slug"]}],
    "description": "given as exactly one of id or slug",
}
UPDATE = (
    ID,
    Param("name", NAME_SCHEMA, required=False, description="a new display name"),
    Param("owner_email", EMAIL_SCHEMA, required=False, description="a new owner"),
    Param("plan", PLAN_SCHEMA, required=False, description="a new plan"),
)
LIST = (
    Param("limit", {"type": "integer", "minimum": 1, "maximum": 500}, required=False,
          description="page size, default 50"),
    Param("cursor", CURSOR_SCHEMA, required=False,
          description="next_cursor of the previous page, exactly as this server issued it"),
    Param("status", {"type": "string", "enum": list(STATUSES)}, required=False,
          description="only accounts with this status"),
)
CLUSTER_REMOVE = (
    Param("name", {**LABEL_SCHEMA, "description": "a cluster's name"}, description="the cluster"),
)
CLUSTER_REMOVED_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["name", "removed"], "additionalProperties": False,
    "properties": {"name": {"type": "string"}, "removed": {"type": "boolean"}},
}
RETRY = (
    ID,
    Param("cluster", {**LABEL_SCHEMA, "description": "a cluster's name"}, required=False,
          description="only this cluster (default: every cluster where the account failed)"),
)
WAIT = (
    ID,
    Param("generation", {"type": "integer", "minimum": 1}, required=False,
          description="the generation to wait for (default: the account's current one)"),
    Param("timeout", {"type": "number", "minimum": 0, "maximum": WAIT_MAX}, required=False,
          description=f"seconds to wait at most (default {WAIT_DEFAULT:g})"),
)

# results ------------------------------------------------------------------------------------
ACCOUNT_REF = {"$ref": "#/components/schemas/Account"}
DATE_TIME = {"type": "string", "format": "date-time"}
GENERATION = {"type": "integer", "minimum": 1}
CLUSTER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["state", "observed_generation", "online", "updated_at"],
    "additionalProperties": False,
    "properties": {
        "state": {"enum": list(CLUSTER_STATES)},
        "observed_generation": {
            "type": "integer", "minimum": 0,
            "description": "the account generation this cluster last reported on; 0: none yet",
        },
        "online": {"type": "boolean", "description": "whether the cluster's daemon is connected"},
        "updated_at": {"type": ["string", "null"], "format": "date-time"},
        "error": {"type": "string", "description": "the Kubernetes reason and message of the last failure"},
        "attempts": {"type": "integer", "minimum": 0},
        "last_seen": {"type": "string", "format": "date-time",
                      "description": "an offline cluster: when the bus last heard from it"},
    },
}
QUANTITIES = {"type": "object", "additionalProperties": {"type": "string"}}
COMPONENTS: dict[str, Any] = {
    "schemas": {
        "Account": {
            "type": "object",
            "required": ["id", "slug", "name", "owner_email", "plan", "namespace", "created_at",
                         "updated_at", "generation", "status", "clusters"],
            "additionalProperties": False,
            "properties": {
                "id": UUID_SCHEMA,
                "slug": {"type": "string", "minLength": 1, "maxLength": SLUG_MAX},
                "name": {"type": "string"},
                "owner_email": {"type": "string"},
                "plan": {"type": "string"},
                "namespace": {"type": "string"},
                "created_at": DATE_TIME,
                "updated_at": DATE_TIME,
                "generation": GENERATION,
                "status": {"enum": list(STATUSES)},
                "clusters": {"type": "object", "additionalProperties": CLUSTER_SCHEMA},
            },
        },
        "Plan": {
            "type": "object",
            "required": ["name", "quota", "limits"],
            "additionalProperties": False,
            "properties": {
                "name": {"type": "string"},
                "quota": {**QUANTITIES, "description": "the ResourceQuota's spec.hard"},
                "limits": {
                    "type": "object", "additionalProperties": QUANTITIES,
                    "description": "the LimitRange's container defaults (default, defaultRequest)",
                },
            },
        },
    }
}
PAGE_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["items", "next_cursor"], "additionalProperties": False,
    "properties": {"items": {"type": "array", "items": ACCOUNT_REF},
                   "next_cursor": {"type": ["string", "null"]}},
}
PLANS_SCHEMA: dict[str, Any] = {"type": "array", "items": {"$ref": "#/components/schemas/Plan"}}
CLUSTERS_SCHEMA: dict[str, Any] = {"type": "array", "items": {
    "type": "object",
    "required": ["name", "status", "last_seen", "acked_seq", "lag"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string"}, "status": {"enum": ["online", "offline"]},
        "last_seen": {"type": ["string", "null"]}, "acked_seq": {"type": "integer"},
        "lag": {"type": "integer"},
    },
}}
