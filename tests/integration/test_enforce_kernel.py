"""Enforcement on the real kernel: deny rules kill a session's exec before the program's first
instruction, record every decision, and never touch a process outside a session."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from marker_program import build_marker
from sensor_util import Collector, watched_root

from claude_audit import bpf_layout as L
from claude_audit.config import deny_rule_groups, parse_config
from claude_audit.enforce import Mode
from claude_audit.events import ExecEvent
from claude_audit.sensor import Sensor

SIGKILL_STATUS = 128 + 9
"""What bash reports for a child killed by SIGKILL."""


@pytest.fixture(scope="module")
def marker_program(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The static test program whose first action is to append a byte to the file its last argument names."""
    return build_marker(tmp_path_factory.mktemp("marker") / "marker")


@pytest.fixture
def rules(sensor: Sensor) -> Iterator[Any]:
    """Load rules with `rules(mode, *deny)`; every rule is removed from the kernel when the test ends."""

    def load(mode: Mode, *deny: dict[str, Any]) -> None:
        cfg = [{"reason": f"reason of {d['id']}", **d} for d in deny]
        parsed = parse_config({"enforce": {"mode": mode, "deny": cfg}}).enforce.deny
        sensor.apply_enforcement(mode, deny_rule_groups(parsed), parsed)

    yield load
    sensor.apply_enforcement("off", {}, [])


def _in_session(sensor: Sensor, collector: Collector, script: str, done: Path, timeout: float = 600.0) -> int:
    """Run `script` in a bash made a session root; pump events until it writes `done`; its root pid."""
    # bash reports each killed child on stderr; thousands of those lines say nothing the test checks
    with watched_root(sensor, f"exec 2>/dev/null; {script}; echo finished > {done}") as root:
        deadline = time.monotonic() + timeout
        while not done.exists():
            assert time.monotonic() < deadline, "the session's script did not finish"
            collector.pump(50)
    collector.settle()
    return root


def _decisions(collector: Collector, root: int, decision: str) -> list[ExecEvent]:
    return [e for e in collector.execs(root) if e.denial is not None and e.denial.decision == decision]


def _statuses(path: Path) -> list[int]:
    return [int(x) for x in path.read_text().split()]


def test_denied_program_never_runs_ten_thousand_times_and_every_kill_is_recorded(
    sensor: Sensor, collector: Collector, rules: Any, marker_program: Path, tmp_path: Path
) -> None:
    """10 000 execs of a denied program in a session: each killed before its first instruction (no
    marker byte, status SIGKILL), each recorded as denied or counted as a lost decision record."""
    n = 10_000
    rules("enforce", {"id": "no-marker", "program": "marker"})
    marker, statuses = tmp_path / "marker-written", tmp_path / "statuses"
    before = sensor.counter_totals()
    started = time.monotonic()
    root = _in_session(
        sensor,
        collector,
        f"k=0; for ((i=0; i<{n}; i++)); do {marker_program} {marker}; "
        f"[ $? -eq {SIGKILL_STATUS} ] && k=$((k+1)); done; echo $k > {statuses}",
        tmp_path / "done",
    )
    elapsed = time.monotonic() - started
    after = sensor.counter_totals()
    assert not marker.exists(), f"the denied program ran {marker.stat().st_size} times"
    assert _statuses(statuses) == [n]
    assert after[L.COUNTER_DENIED] - before[L.COUNTER_DENIED] == n
    denied = _decisions(collector, root, "denied")
    lost = after[L.COUNTER_DENY_RECORD_LOST] - before[L.COUNTER_DENY_RECORD_LOST]
    assert len(denied) + lost == n
    assert all(e.denial is not None and e.denial.index == 0 for e in denied)
    assert all(e.argv == [str(marker_program).encode(), str(marker).encode()] for e in denied)
    print(f"{n} denied execs in {elapsed:.1f} s, {len(denied)} recorded, {lost} counted lost")


def test_same_program_outside_a_session_runs(
    sensor: Sensor, collector: Collector, rules: Any, marker_program: Path, tmp_path: Path
) -> None:
    """While a rule denies it to sessions, the program runs for a process of no session, even a child of
    a process called like the program."""
    rules("enforce", {"id": "no-marker", "program": "marker"})
    marker = tmp_path / "m"
    for _ in range(20):
        assert subprocess.run([str(marker_program), str(marker)], check=False).returncode == 0
    assert marker.read_bytes() == b"x" * 20


def test_dry_run_stops_nothing_and_records_each_would_deny(
    sensor: Sensor, collector: Collector, rules: Any, marker_program: Path, tmp_path: Path
) -> None:
    """Dry-run: every exec runs (one marker byte each) and every one is recorded as would-deny."""
    n = 300
    rules("dry-run", {"id": "no-marker", "program": "marker"})
    marker = tmp_path / "m"
    before = sensor.counter_totals()
    root = _in_session(
        sensor, collector, f"for ((i=0; i<{n}; i++)); do {marker_program} {marker}; done", tmp_path / "done"
    )
    after = sensor.counter_totals()
    assert marker.read_bytes() == b"x" * n
    assert after[L.COUNTER_DENIED] == before[L.COUNTER_DENIED]
    would = _decisions(collector, root, "would-deny")
    lost = after[L.COUNTER_DENY_RECORD_LOST] - before[L.COUNTER_DENY_RECORD_LOST]
    assert len(would) + lost == n and len(would) > 0


def test_argument_rules_match_exactly_what_they_say(
    sensor: Sensor, collector: Collector, rules: Any, marker_program: Path, tmp_path: Path
) -> None:
    """`git push --force` is denied; `git push`, `git push --force-with-lease`, `git status` run; a huge
    argv[0] cannot hide the arguments (the kernel fails closed)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    git = bin_dir / "git"
    shutil.copy(marker_program, git)
    rules("enforce", {"id": "no-force-push", "program": "git", "args": ["push", "--force"]})
    m = {name: tmp_path / name for name in ("force", "push", "lease", "status", "hidden", "later")}
    statuses = tmp_path / "statuses"
    script = (
        f"{git} push --force {m['force']}; s1=$?; "
        f"{git} push {m['push']}; s2=$?; "
        f"{git} push --force-with-lease {m['lease']}; s3=$?; "
        f"{git} status {m['status']}; s4=$?; "
        f"(exec -a {'A' * 6000} {git} push --force {m['hidden']}); s5=$?; "
        f"{git} push origin --force {m['later']}; s6=$?; "
        f"echo $s1 $s2 $s3 $s4 $s5 $s6 > {statuses}"
    )
    root = _in_session(sensor, collector, script, tmp_path / "done")
    assert _statuses(statuses) == [SIGKILL_STATUS, 0, 0, 0, SIGKILL_STATUS, 0]
    assert not m["force"].exists() and not m["hidden"].exists()
    assert all(m[k].exists() for k in ("push", "lease", "status", "later"))
    denied = _decisions(collector, root, "denied")
    assert sorted(e.argv[1:3] for e in denied) == [[b"push", b"--force"]] * 2


def test_path_rules_exact_and_prefix_and_what_a_copy_escapes(
    sensor: Sensor, collector: Collector, rules: Any, marker_program: Path, tmp_path: Path
) -> None:
    """An exact path denies that path only; a prefix denies anything under it, copies included; a
    program-name rule follows the name wherever the file is. What escapes name rules (docs/ENFORCE.md):
    a renamed copy, and fexecve of the very file a rule names."""
    tools, other = tmp_path / "tools", tmp_path / "other"
    tools.mkdir()
    other.mkdir()
    for d, name in ((tools, "a"), (tools, "b"), (other, "exact"), (other, "named"), (other, "renamed")):
        shutil.copy(marker_program, d / name)
    os.link(other / "named", tools / "named-link")
    rules(
        "enforce",
        {"id": "tools-dir", "path_prefix": f"{tools}/"},
        {"id": "one-file", "path": f"{other}/exact"},
        {"id": "by-name", "program": "named"},
    )
    runs = {
        "prefix-a": tools / "a",
        "prefix-b": tools / "b",
        "prefix-link": tools / "named-link",
        "exact": other / "exact",
        "name": other / "named",
        "renamed": other / "renamed",
    }
    statuses = tmp_path / "statuses"
    script = "; ".join(f"{exe} {tmp_path / ('m-' + key)}; echo $? >> {statuses}" for key, exe in runs.items())
    # fexecve: the kernel's exec path is then "/dev/fd/N", which names neither the file nor its directory
    fexecve = (
        "import os, sys; fd = os.open(sys.argv[1], os.O_RDONLY); os.execve(fd, ['named', sys.argv[2]], {})"
    )
    script += (
        f'; /usr/bin/python3 -c "{fexecve}" {other / "named"} {tmp_path / "m-fexecve"}; echo $? >> {statuses}'
    )
    root = _in_session(sensor, collector, script, tmp_path / "done")
    assert _statuses(statuses) == [SIGKILL_STATUS] * 5 + [0, 0]
    assert [k for k in [*runs, "fexecve"] if (tmp_path / ("m-" + k)).exists()] == ["renamed", "fexecve"]
    ids = [
        sensor.deny_rule(e.denial.generation, e.denial.index) for e in _decisions(collector, root, "denied")
    ]
    assert [r.id for r in ids if r] == ["tools-dir", "tools-dir", "tools-dir", "one-file", "by-name"]


def test_user_limited_rule_and_off_leaves_no_kernel_rule(
    sensor: Sensor, collector: Collector, rules: Any, marker_program: Path, tmp_path: Path
) -> None:
    """A rule for another uid does not touch root's session; "off" empties the kernel's rule maps."""
    rules("enforce", {"id": "not-root", "program": "marker", "users": [54321]})
    marker = tmp_path / "m"
    _in_session(sensor, collector, f"{marker_program} {marker}", tmp_path / "done1")
    assert marker.read_bytes() == b"x"
    rules("enforce", {"id": "root-too", "program": "marker", "users": [0]})
    assert sensor.kernel_deny_entries() == 1
    _in_session(sensor, collector, f"{marker_program} {marker}", tmp_path / "done2")
    assert marker.read_bytes() == b"x"
    rules("off")
    assert sensor.kernel_deny_entries() == 0
    _in_session(sensor, collector, f"{marker_program} {marker}", tmp_path / "done3")
    assert marker.read_bytes() == b"xx"


def test_switching_rule_sets_is_atomic_under_load(
    sensor: Sensor, collector: Collector, rules: Any, marker_program: Path, tmp_path: Path
) -> None:
    """Reloading the same rule 50 times while a session runs the program in a loop: no exec slips
    through between the old and the new set (every generation denies it)."""
    rules("enforce", {"id": "no-marker", "program": "marker"})
    marker, statuses, done = tmp_path / "m", tmp_path / "statuses", tmp_path / "done"
    script = f"for ((i=0; i<2000; i++)); do {marker_program} {marker}; echo $? >> {statuses}; done"
    with watched_root(sensor, f"exec 2>/dev/null; {script}; echo finished > {done}"):
        switches = 0
        while not done.exists():
            rules("enforce", {"id": f"no-marker-{switches}", "program": "marker"})
            switches += 1
            collector.pump(5)
    assert switches >= 2
    assert not marker.exists()
    assert set(_statuses(statuses)) == {SIGKILL_STATUS}


def test_script_is_denied_by_its_own_name_not_by_its_interpreter(
    sensor: Sensor, collector: Collector, rules: Any, tmp_path: Path
) -> None:
    """A rule on a script's name stops the script's exec (the kernel's exec path is the script's, even
    though it then runs the interpreter); running the interpreter on it by hand is not that exec."""
    script = tmp_path / "deploy"
    script.write_text(f"#!/bin/sh\necho ran >> {tmp_path / 'ran'}\n")
    script.chmod(0o755)
    rules("enforce", {"id": "no-deploy", "program": "deploy"})
    statuses = tmp_path / "statuses"
    _in_session(
        sensor,
        collector,
        f"{script}; echo $? >> {statuses}; /bin/sh {script}; echo $? >> {statuses}",
        tmp_path / "done",
    )
    assert _statuses(statuses) == [SIGKILL_STATUS, 0]
    assert (tmp_path / "ran").read_text() == "ran\n"


def _map_ids(name: str) -> list[int]:
    """Ids of the loaded BPF maps called `name` (bpftool prints one object or, for several, a list)."""
    out = subprocess.run(
        ["bpftool", "-j", "map", "show", "name", name], capture_output=True, text=True, check=True
    )
    shown = json.loads(out.stdout)
    return [m["id"] for m in (shown if isinstance(shown, list) else [shown])]


def test_rule_maps_cannot_be_changed_by_a_user(sensor: Sensor, rules: Any) -> None:
    """The rule maps are reachable by id only with CAP_SYS_ADMIN: as `nobody`, bpftool can neither read
    the rules nor switch enforcement off (the agent's user cannot edit or disable a rule)."""
    rules("enforce", {"id": "no-marker", "program": "marker"})
    as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "bpftool"]
    for map_id in _map_ids("deny_name"):
        dump = subprocess.run(
            [*as_nobody, "map", "dump", "id", str(map_id)], capture_output=True, text=True, check=False
        )
        assert dump.returncode != 0 and "Operation not permitted" in dump.stderr, dump
    zero = ["0", "0", "0", "0"]
    for map_id in _map_ids("enforce_state"):
        update = subprocess.run(
            [*as_nobody, "map", "update", "id", str(map_id), "key", *zero, "value", *zero],
            capture_output=True,
            text=True,
            check=False,
        )
        assert update.returncode != 0 and "Operation not permitted" in update.stderr, update
    assert sensor.kernel_deny_entries() == 1
