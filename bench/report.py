"""The exec-storm benchmark's numbers: summary statistics, the analysis against targets, the table."""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import statistics
from pathlib import Path
from typing import Any

TARGETS = {
    "unrelated_ratio": 0.99,
    "watched_ratio": 0.95,
    "cpu_ms_per_1000": 40.0,
    "latency_p99_ms": 50.0,
}


def linreg_slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys over xs (0 when all xs are equal)."""
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else 0.0


def percentile(xs: list[float], p: float) -> float:
    """The `p`-th percentile of xs by nearest rank (no interpolation: always one of the samples)."""
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))]


def summary(xs: list[float]) -> dict[str, Any]:
    """n, p50, p99, max and min of xs; just n (0) when there are none."""
    if not xs:
        return {"n": 0}
    p50, p99 = percentile(xs, 50), percentile(xs, 99)
    return {"n": len(xs), "p50": p50, "p99": p99, "max": max(xs), "min": min(xs)}


def min_median_max(xs: list[float]) -> dict[str, float]:
    """The spread of per-repetition values."""
    return {"min": min(xs), "median": statistics.median(xs), "max": max(xs)}


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "kernel": platform.release(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "loadavg_at_start": Path("/proc/loadavg").read_text().split()[:3],
    }


def analyse(raw: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    reps = raw["reps"]
    base = [r["baseline"]["rate"] for r in reps]
    unrel = [r["daemon_unrelated"]["rate"] for r in reps]
    watched = [r["watched"]["rate"] for r in reps]
    a: dict[str, Any] = {
        "rate_baseline": min_median_max(base),
        "rate_daemon_unrelated": min_median_max(unrel),
        "rate_watched": min_median_max(watched),
        "unrelated_ratio_per_rep": [u / b for u, b in zip(unrel, base, strict=True)],
        "watched_ratio_per_rep": [w / b for w, b in zip(watched, base, strict=True)],
        "watched_vs_daemon_unrelated_per_rep": [w / u for w, u in zip(watched, unrel, strict=True)],
        "cpu_ms_per_1000": min_median_max([r["watched"]["cpu_ms_per_1000"] for r in reps]),
        "watched_lost": sum(
            r["watched"]["lost_kernel_and_queue"] + r["watched"]["lost_records"] for r in reps
        ),
        "records_match_all": all(r["watched"]["records_match"] for r in reps),
        "records_vs_execs": [(r["watched"]["records_true"], r["watched"]["execs"]) for r in reps],
    }
    a["unrelated_ratio"] = statistics.median(unrel) / statistics.median(base)
    a["watched_ratio"] = statistics.median(watched) / statistics.median(base)
    if "auditd" in reps[0]:
        aud = [r["auditd"]["rate"] for r in reps]
        a["rate_auditd"] = min_median_max(aud)
        a["auditd_ratio_per_rep"] = [x / b for x, b in zip(aud, base, strict=True)]
        a["auditd_ratio"] = statistics.median(aud) / statistics.median(base)
        a["auditd_cpu_ms_per_1000"] = min_median_max([r["auditd"]["cpu_ms_per_1000"] for r in reps])
        a["auditd_cpu_ms_per_1000_with_kauditd"] = min_median_max(
            [r["auditd"]["cpu_ms_per_1000_with_kauditd"] for r in reps]
        )
        a["auditd_lost"] = sum(r["auditd"]["lost"] for r in reps)
        a["auditd_logged_vs_execs"] = [
            (r["auditd"]["storm_events_logged"], r["auditd"]["execs"]) for r in reps
        ]
    return a


def table(raw: dict[str, Any], a: dict[str, Any]) -> str:
    lat = raw["latency"]
    soak = raw["soak"]
    has_aud = "auditd_ratio" in a

    def aud(s: str) -> str:
        return s if has_aud else "not run"

    def ok(cond: bool) -> str:
        return "yes" if cond else "**no**"

    lost = a["watched_lost"] + sum(p["lost_kernel_and_queue"] + p["lost_records"] for p in (lat, soak))
    ur, wr = a["unrelated_ratio_per_rep"], a["watched_ratio_per_rep"]
    rows = [
        ("metric", "claude-audit", "auditd (execve rule)", "target", "met?"),
        (
            "baseline storm, execs/s (min / median)",
            f"{a['rate_baseline']['min']:.0f} / {a['rate_baseline']['median']:.0f}",
            "",
            "",
            "",
        ),
        (
            "unrelated storm throughput vs no monitor (median ratio; per-rep min)",
            f"{a['unrelated_ratio']:.3f}; {min(ur):.3f}",
            aud(f"{a.get('auditd_ratio', 0):.3f}; {min(a.get('auditd_ratio_per_rep', [0])):.3f}"),
            f">= {TARGETS['unrelated_ratio']}",
            ok(a["unrelated_ratio"] >= TARGETS["unrelated_ratio"]),
        ),
        (
            "watched-session storm throughput vs no monitor (median ratio; per-rep min)",
            f"{a['watched_ratio']:.3f}; {min(wr):.3f}",
            aud("(every exec is audited: row above)"),
            f">= {TARGETS['watched_ratio']}",
            ok(a["watched_ratio"] >= TARGETS["watched_ratio"]),
        ),
        (
            "events lost in watched storms (all reps + latency + soak)",
            str(lost),
            aud(str(a.get("auditd_lost", ""))),
            "0",
            ok(lost == 0),
        ),
        (
            "exec records == execs counted (per rep)",
            ", ".join(f"{r}/{e}" for r, e in a["records_vs_execs"])
            + f"; soak {soak['records_true']}/{soak['execs']}",
            aud(", ".join(f"{r}/{e}" for r, e in a.get("auditd_logged_vs_execs", []))),
            "equal",
            ok(a["records_match_all"] and soak["records_match"] and lat["records_match"]),
        ),
        (
            "CPU ms per 1000 recorded execs (min / median)",
            f"{a['cpu_ms_per_1000']['min']:.1f} / {a['cpu_ms_per_1000']['median']:.1f}",
            aud(
                f"{a.get('auditd_cpu_ms_per_1000', {}).get('min', 0):.1f} / "
                f"{a.get('auditd_cpu_ms_per_1000', {}).get('median', 0):.1f} "
                f"(+kauditd: {a.get('auditd_cpu_ms_per_1000_with_kauditd', {}).get('median', 0):.1f})"
            ),
            f"<= {TARGETS['cpu_ms_per_1000']:g}",
            ok(a["cpu_ms_per_1000"]["median"] <= TARGETS["cpu_ms_per_1000"]),
        ),
        (
            "exec-to-record latency in the file, p50 / p99 ms",
            f"{lat['latency_ms']['p50']:.1f} / {lat['latency_ms']['p99']:.1f}",
            "",
            f"p99 <= {TARGETS['latency_p99_ms']:g}",
            ok(lat["latency_ms"]["p99"] <= TARGETS["latency_p99_ms"]),
        ),
        (
            "@timestamp minus argv time (sanity), p50 / p99 ms",
            f"{lat['timestamp_minus_argv_ms']['p50']:.2f} / {lat['timestamp_minus_argv_ms']['p99']:.2f}",
            "",
            "small, >= 0",
            ok(lat["timestamp_minus_argv_ms"]["min"] >= 0),
        ),
        (
            f"daemon RSS over {soak['elapsed']:.0f} s watched storm, MiB first / last / max",
            f"{soak['rss_kb_first'] / 1024:.1f} / {soak['rss_kb_last'] / 1024:.1f} / "
            f"{soak['rss_kb_max'] / 1024:.1f}",
            "",
            "no growth",
            ok(soak["rss_kb_per_min_second_half"] < 256),
        ),
        (
            "RSS slope over the soak's second half, KiB/min",
            f"{soak['rss_kb_per_min_second_half']:.0f}",
            "",
            "~0",
            "",
        ),
    ]
    out = [
        "| " + " | ".join(rows[0]) + " |",
        "|" + "---|" * len(rows[0]),
        *("| " + " | ".join(r) + " |" for r in rows[1:]),
    ]
    return "\n".join(out)
