"""The ctypes mirrors in bpf_layout agree with bpf/claude_audit.h, as compiled by the C compiler."""

from __future__ import annotations

import ctypes
import subprocess
from pathlib import Path

import pytest

from claude_audit import bpf_layout as L

HEADER = L.BPF_DIR / "claude_audit.h"


def _c_layout(tmp_path: Path, structs: dict[str, type[ctypes.Structure]]) -> dict[str, int]:
    """Compile a program that prints sizeof/offsetof for every mirrored field, and parse its output."""
    lines = [
        "#include <stdio.h>",
        "#include <stddef.h>",
        "#include <linux/types.h>",
        f'#include "{HEADER}"',
        "int main(void) {",
    ]
    for cname, py in structs.items():
        lines.append(f'printf("{cname} %zu\\n", sizeof(struct {cname}));')
        for fname, *_ in py._fields_:
            lines.append(f'printf("{cname}.{fname} %zu\\n", offsetof(struct {cname}, {fname}));')
    lines.append('printf("exec_event.data %zu\\n", offsetof(struct exec_event, data));')
    lines.append("return 0; }")
    src = tmp_path / "layout.c"
    src.write_text("\n".join(lines))
    exe = tmp_path / "layout"
    subprocess.run(["cc", "-o", str(exe), str(src)], check=True)
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout
    return {k: int(v) for k, v in (line.split() for line in out.splitlines())}


@pytest.fixture(scope="module")
def c_layout(tmp_path_factory: pytest.TempPathFactory) -> dict[str, int]:
    structs = dict(L.MIRRORS)
    structs["exec_event"] = L.ExecEventHeader
    return _c_layout(tmp_path_factory.mktemp("layout"), structs)


@pytest.mark.parametrize("cname", sorted(L.MIRRORS))
def test_struct_mirror_matches_header(cname: str, c_layout: dict[str, int]) -> None:
    """Size and every field offset of each mirrored struct match the C header."""
    py = L.MIRRORS[cname]
    assert ctypes.sizeof(py) == c_layout[cname]
    for fname, *_ in py._fields_:
        assert getattr(py, fname).offset == c_layout[f"{cname}.{fname}"], fname


def test_exec_event_header_matches(c_layout: dict[str, int]) -> None:
    """Every fixed field of exec_event sits where the header puts it, and data follows the header."""
    for fname, *_ in L.ExecEventHeader._fields_:
        assert getattr(L.ExecEventHeader, fname).offset == c_layout[f"exec_event.{fname}"], fname
    assert c_layout["exec_event.data"] == L.EXEC_DATA_OFFSET


def test_constants_match_header() -> None:
    """The #define constants restated in Python have the header's values."""
    text = HEADER.read_text()
    defines = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0] == "#define":
            defines[parts[1]] = parts[2]
    for name in (
        "EVENT_EXEC",
        "EVENT_CANDIDATE",
        "EVENT_EXIT",
        "TRACK_PENDING_ROOT",
        "TRACK_SEEDED",
        "TRACK_RECOVERED",
        "EXEC_ARGS_TRUNCATED",
        "EXEC_FILENAME_TRUNCATED",
        "EXEC_ARGS_UNREADABLE",
        "EXEC_IS_ROOT",
        "COUNTER_RING_LOST",
        "COUNTER_TRACK_FULL",
        "COUNTER_CANDIDATE_LOST",
        "COUNTER_STALE_PID",
        "COUNTER_EXECS_SEEN",
        "COUNTER_ROOTS_FULL",
        "COUNTER_CANDIDATE_THROTTLED",
        "COUNTER_CANDIDATE_REJECTED_AGAIN",
        "COUNTER_MAX",
        "COMM_LEN",
        "CANDIDATE_EXEC",
        "CANDIDATE_RENAME",
        "COUNTER_DENIED",
        "COUNTER_WOULD_DENY",
        "COUNTER_DENY_RECORD_LOST",
        "EXEC_WOULD_DENY",
        "EXEC_DENIED",
        "EXEC_DENY_RULE_SHIFT",
        "EXEC_DENY_RULE_MASK",
        "ENFORCE_OFF",
        "ENFORCE_DRY_RUN",
        "ENFORCE_KILL",
        "ENFORCE_GENERATION_SHIFT",
        "ENFORCE_MAX_RULES",
        "DENY_PATH_KEY_LEN",
        "DENY_NAME_LEN",
        "DENY_ARGS_LEN",
        "DENY_SLOTS",
        "DENY_USERS",
    ):
        assert int(defines[name], 0) == getattr(L, name), name
