"""Joins with Claude Code's own ids, with the real CLI: the session id the CLI reports is on the records of
its session, for 2.1.x (from what it gives its children) and 2.0.x (from its transcript); with tracing on,
2.1.x's TRACEPARENT is on the records of each tool call."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from claude_cli import NATIVE_VERSION, install_claude
from daemon_util import RunningDaemon, execs, running_daemon
from fake_api import FakeAnthropicAPI, tag_prompt
from session import DEFAULT_ARGS, kill_session, start_session


def test_session_id_and_transcript_path_match_the_cli(
    claude_bin: Path, fake_api: FakeAnthropicAPI, e2e_dir: Path
) -> None:
    """Every tool exec of the session carries claude.session_id equal to the session_id the CLI prints
    with --output-format json, and claude.transcript_path naming the transcript it wrote (2.0.77: the
    id itself comes from that transcript, identity_source "transcript")."""
    fake_api.set_script("j1", ["/bin/echo first-join-call", "/bin/echo second-join-call"])
    home = e2e_dir / "home"
    with running_daemon(e2e_dir) as d:
        p = start_session(
            claude_bin,
            fake_api.url,
            tag_prompt("j1"),
            home,
            e2e_dir / "cwd",
            args=(*DEFAULT_ARGS, "--output-format", "json"),
        )
        out, err = p.communicate(timeout=180)
        assert p.returncode == 0, err
        reported = json.loads(out)["session_id"]
        d.wait_for(
            lambda rs: any(
                e["claude"]["pid"] == p.pid and e["process"]["args"][-1:] == ["second-join-call"]
                for e in execs(rs)
            )
        )
    tool = [
        e for e in execs(d.records()) if e["claude"]["pid"] == p.pid and e["claude"].get("origin") == "tool"
    ]
    assert len({e["claude"]["invocation"] for e in tool}) == 2
    for e in tool:
        assert e["claude"].get("session_id") == reported, e["claude"]
        path = Path(e["claude"]["transcript_path"])
        assert path.name == f"{reported}.jsonl" and path.is_relative_to(home / ".claude" / "projects")
        assert path.is_file()
    if "2.0." in str(claude_bin.resolve()):
        assert {e["claude"]["identity_source"] for e in tool} == {"transcript"}


# What 2.1.331 needs before it gives a Bash tool shell TRACEPARENT (each one alone left out gave the
# shell none, measured): its child environment (Flt) adds TRACEPARENT only when
# CLAUDE_CODE_PROPAGATE_TRACEPARENT is set (or the API is first-party, which a loopback one is not) and a
# span is active, which needs the enhanced-telemetry beta and OpenTelemetry traces exported somewhere.
# The fake API answers POST /v1/traces with a 404, which the CLI shrugs off.
def _tracing_env(api_url: str) -> dict[str, str]:
    return {
        "CLAUDE_CODE_PROPAGATE_TRACEPARENT": "1",
        "CLAUDE_CODE_ENHANCED_TELEMETRY_BETA": "1",
        "CLAUDE_CODE_ENABLE_TELEMETRY": "1",
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json",
        "OTEL_EXPORTER_OTLP_ENDPOINT": api_url,
    }


def _held_command(seen: Path, marker: str, release: Path) -> str:
    """Save the TRACEPARENT the tool shell got, exec a marker, then keep the shell (the invocation's head)
    alive until the test has seen the marker's record: the daemon reads TRACEPARENT from the head's
    /proc environ when it handles the head's exec, and a head that has already exited by then gives none
    (measured: 5 runs in 6 lost it for an invocation on this loaded machine without the hold)."""
    return (
        f"printenv TRACEPARENT > {seen}; /bin/true {marker}; "
        f"while [ ! -e {release} ]; do /bin/sleep 0.1; done"
    )


def _run_held(d: RunningDaemon, p: subprocess.Popen[str], markers: list[str], releases: list[Path]) -> None:
    """Release each held command once its marker's record is in the log; wait for the CLI to finish."""
    try:
        for marker, release in zip(markers, releases, strict=True):
            d.wait_for(
                lambda rs, m=marker: any(
                    e["claude"]["pid"] == p.pid and e["process"]["args"][-1:] == [m] for e in execs(rs)
                ),
                timeout=120,
            )
            release.touch()
        _out, err = p.communicate(timeout=180)
    finally:
        kill_session(p)
    assert p.returncode == 0, err


def _by_invocation(records: list[dict[str, Any]], claude_pid: int) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for e in records:
        if e["claude"]["pid"] == claude_pid and e["claude"].get("origin") == "tool":
            found.setdefault(e["claude"]["invocation"], []).append(e)
    return found


def _invocation_with(by_invocation: dict[str, list[dict[str, Any]]], marker: str) -> list[dict[str, Any]]:
    hits = [rs for rs in by_invocation.values() if any(e["process"]["args"][-1:] == [marker] for e in rs)]
    assert len(hits) == 1, marker
    return hits[0]


def test_trace_and_span_ids_are_the_traceparent_claude_code_gave_the_tool(
    fake_api: FakeAnthropicAPI, e2e_dir: Path
) -> None:
    """2.1.331 with its OpenTelemetry tracing on and CLAUDE_CODE_PROPAGATE_TRACEPARENT=1 gives each Bash
    tool shell the TRACEPARENT of the tool call's span; every exec record of that invocation (the shell
    and its children) carries trace.id and span.id equal to the trace-id and parent-id of the value the
    shell saw; the session's two tool calls have their own span ids in one trace (read per invocation,
    not per session), the trace of the CLI's own model requests (their traceparent header). A session without
    tracing gives its shell no TRACEPARENT and none of its records has trace or span, its shell held alive
    the same way as the traced ones, so its environment was there to read. Only 2.1.x: 2.0.77's cli.js
    mentions TRACEPARENT only in Sentry's header parsing and never gives it to a shell."""
    seen = [e2e_dir / f"traceparent-{n}" for n in (1, 2, 0)]
    releases = [e2e_dir / f"release-{n}" for n in (1, 2, 0)]
    markers = ["trace-marker-1", "trace-marker-2", "untraced-marker"]
    fake_api.set_script("tr1", [_held_command(seen[n], markers[n], releases[n]) for n in (0, 1)])
    fake_api.set_script("tr0", [_held_command(seen[2], markers[2], releases[2])])
    claude_bin = install_claude(NATIVE_VERSION)
    home, cwd = e2e_dir / "home", e2e_dir / "cwd"
    with running_daemon(e2e_dir) as d:
        traced = start_session(
            claude_bin, fake_api.url, tag_prompt("tr1"), home, cwd, extra_env=_tracing_env(fake_api.url)
        )
        _run_held(d, traced, markers[:2], releases[:2])
        untraced = start_session(claude_bin, fake_api.url, tag_prompt("tr0"), home, cwd)
        _run_held(d, untraced, markers[2:], releases[2:])
    records = execs(d.records())

    traced_invocations = _by_invocation(records, traced.pid)
    assert len(traced_invocations) == 2, sorted(traced_invocations)
    request_traces = {
        r.headers["traceparent"].split("-")[1]
        for r in fake_api.requests_for("tr1")
        if "traceparent" in r.headers
    }
    trace_ids, span_ids = set(), set()
    for n in (0, 1):
        _version, trace_id, span_id, _flags = seen[n].read_text().strip().split("-")
        invocation = _invocation_with(traced_invocations, markers[n])
        assert {"bash", "printenv", "true", "sleep"} <= {e["process"]["name"] for e in invocation}
        for e in invocation:
            assert e.get("trace") == {"id": trace_id}, e
            assert e.get("span") == {"id": span_id}, e
        assert trace_id in request_traces, (trace_id, request_traces)
        trace_ids.add(trace_id)
        span_ids.add(span_id)
    assert len(trace_ids) == 1 and len(span_ids) == 2

    assert seen[2].read_text() == ""
    untraced_invocation = _invocation_with(_by_invocation(records, untraced.pid), markers[2])
    assert {"bash", "printenv", "true", "sleep"} <= {e["process"]["name"] for e in untraced_invocation}
    for e in (e for e in records if e["claude"]["pid"] == untraced.pid):
        assert "trace" not in e and "span" not in e, e
