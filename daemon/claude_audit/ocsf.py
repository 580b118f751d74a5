"""OCSF 1.8.0 records from the finished ECS records (`[audit_log] schema = "ocsf"`). Record stage. Pure.

An exec becomes Process Activity (class_uid 1007, category System Activity, activity Launch, type_uid
100701); every other record (daemon lifecycle, sessions, losses, checkpoints, alerts) becomes a Base
Event (class_uid 0) whose activity_name is the ECS event.action. The agent's own fields that OCSF has no
attribute for (claude.*, claude_audit.*, the exact argv, the boot id, ECS event.*) are kept whole under
`unmapped`, with their ECS names. The mapping table is in docs/EVIDENCE.md.
"""

from __future__ import annotations

import calendar
from collections.abc import Mapping
from typing import Any, Final

OCSF_VERSION: Final = "1.8.0"
PRODUCT: Final = {"name": "claude-audit", "vendor_name": "claude-audit"}
SEVERITY: Final = {1: "Informational", 3: "Medium", 4: "High"}
_MAPPED_TOP: Final = frozenset({"@timestamp", "ecs", "host", "process", "user"})


def _ms(rfc3339: str) -> int:
    """Milliseconds since the epoch of an RFC 3339 UTC time with nanoseconds (records.rfc3339_ns)."""
    date, _, frac = rfc3339.rstrip("Z").partition(".")
    sec = calendar.timegm(
        (
            int(date[0:4]),
            int(date[5:7]),
            int(date[8:10]),
            int(date[11:13]),
            int(date[14:16]),
            int(date[17:19]),
        )
    )
    return sec * 1000 + int((frac + "000")[:3])


def _device(host: Mapping[str, Any]) -> dict[str, Any]:
    device: dict[str, Any] = {
        "hostname": host.get("hostname", ""),
        "type_id": 0,
        "type": "Unknown",
        "os": {"name": "Linux", "type_id": 200, "type": "Linux"},
    }
    if "id" in host:
        device["uid"] = host["id"]
    return device


def _metadata(rec: Mapping[str, Any]) -> dict[str, Any]:
    event = rec.get("event", {})
    meta: dict[str, Any] = {
        "version": OCSF_VERSION,
        "product": dict(PRODUCT),
        "original_time": rec["@timestamp"],
        "log_name": event.get("dataset", ""),
    }
    if isinstance(event.get("sequence"), int):
        meta["sequence"] = event["sequence"]
    service = rec.get("service")
    if isinstance(service, dict) and "version" in service:
        meta["product"]["version"] = service["version"]
    return meta


def _unmapped(rec: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in rec.items() if k not in _MAPPED_TOP}
    host = rec.get("host", {})
    if "boot" in host:
        out["host"] = {"boot": host["boot"]}
    return out | dict(extra)


def _process_activity(rec: Mapping[str, Any]) -> dict[str, Any]:
    p = rec["process"]
    process: dict[str, Any] = {
        "pid": p["pid"],
        "tid": p["thread"]["id"],
        "uid": p["entity_id"],
        "name": p["name"],
        "cmd_line": p["command_line"],
        "file": {"name": p["name"], "path": p["executable"], "type_id": 1, "type": "Regular File"},
        "parent_process": {"pid": p["parent"]["pid"]},
        "user": {"uid": rec["user"]["id"]},
    }
    if "start" in p:
        process["created_time"] = _ms(p["start"])
    return {
        "activity_id": 1,
        "activity_name": "Launch",
        "category_uid": 1,
        "category_name": "System Activity",
        "class_uid": 1007,
        "class_name": "Process Activity",
        "type_uid": 100701,
        "type_name": "Process Activity: Launch",
        "severity_id": 1,
        "severity": SEVERITY[1],
        "status_id": 1,
        "status": "Success",
        "time": _ms(rec["@timestamp"]),
        "metadata": _metadata(rec),
        "device": _device(rec.get("host", {})),
        "actor": {"process": {"pid": p["parent"]["pid"]}, "user": {"uid": rec["user"]["id"]}},
        "process": process,
        "unmapped": _unmapped(
            rec, {"process": {"args": p["args"], "args_count": p["args_count"], "group": p.get("group")}}
        ),
    }


def _base_event(rec: Mapping[str, Any]) -> dict[str, Any]:
    event = rec.get("event", {})
    action = str(event.get("action", "event"))
    severity = 4 if event.get("kind") == "alert" else 3 if action == "events-lost" else 1
    out: dict[str, Any] = {
        "activity_id": 99,
        "activity_name": action,
        "category_uid": 0,
        "category_name": "Uncategorized",
        "class_uid": 0,
        "class_name": "Base Event",
        "type_uid": 99,
        "type_name": f"Base Event: {action}",
        "severity_id": severity,
        "severity": SEVERITY[severity],
        "time": _ms(rec["@timestamp"]),
        "metadata": _metadata(rec),
        "message": action,
        "unmapped": _unmapped(rec, {"process": rec["process"]} if "process" in rec else {}),
    }
    if event.get("outcome") == "failure":
        out |= {"status_id": 2, "status": "Failure"}
    return out


def from_ecs(rec: Mapping[str, Any]) -> dict[str, Any]:
    """The OCSF record for one finished ECS record."""
    if rec.get("event", {}).get("action") == "exec":
        return _process_activity(rec)
    return _base_event(rec)
