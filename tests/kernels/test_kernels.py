"""The daemon on Debian's own kernels, booted under QEMU: one test per kernel, each running inside it the
integration tests that matter across kernels and real Claude Code sessions (guest/test_on_this_kernel.py).

Each guest compiles the BPF program four times (the integration sensor fixture, the pid-namespace test,
the ring-loss daemon and the session daemon), 40-70 s each under TCG here; see README "Kernels".
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import pytest
from guest_vm import CACHE, KERNELS, GuestRun, KernelSpec, run_guest

GUEST_TESTS = [
    "tests/integration/test_sensor.py",  # descendants, re-parenting, argv exactness, exits, renames
    # 5 000 execs take minutes under TCG; a throughput test, not a kernel difference
    "--deselect=tests/integration/test_sensor.py::test_moderate_storm_loses_nothing",
    "tests/integration/test_pidns.py",  # the pid-namespace view
    "tests/integration/test_faults.py::test_ring_overflow_loss_is_exact",  # ring loss accounting
    "tests/kernels/guest/test_on_this_kernel.py",  # real Claude Code sessions under one daemon
]
GUEST_TEST_TIMEOUT = 1500


def _report(run: GuestRun) -> str:
    """What to show when a kernel fails: which tests, and the guest's own logs."""
    failed = [f"  {name}: {text}" for name, text in run.junit_cases() if text is not None]
    rc = run.text("pytest.rc").strip() or "none (guest did not finish)"
    parts = [
        f"kernel {run.kernel.name} ({run.package}, {run.release}): qemu exit {run.qemu_rc}, "
        f"pytest exit {rc}, timings {run.timings}",
        "failed in the guest:\n" + ("\n".join(failed) or "  (no junit report)"),
        "setup-host.sh:\n" + run.text("setup.log")[-1500:],
        "doctor:\n" + run.text("doctor.log")[-1500:],
        "pytest:\n" + run.text("pytest.log")[-4000:],
        "daemon stderr:\n" + run.text("daemon.stderr")[-2000:],
        "console:\n" + run.console[-3000:],
    ]
    return "\n\n".join(parts)


def _record_timings(run: GuestRun) -> dict[str, float | str]:
    """Boot, set-up and test times of one run, appended to .kernel-cache/timings.jsonl for the README."""
    t = {k: float(v) for k, v in run.timings.items() if k.endswith(("_start", "_done"))}
    row: dict[str, float | str] = {
        "kernel": run.kernel.name,
        "release": run.release,
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "boot_to_stage2_s": t.get("stage2_start", -1),
        "setup_s": round(t.get("setup_done", 0) - t.get("stage2_start", 0), 1),
        "tests_s": round(t.get("tests_done", 0) - t.get("setup_done", 0), 1),
        "wall_s": round(run.wall_seconds, 1),
    }
    start = run.text("daemon_start_seconds").strip()
    if start:
        row["daemon_start_s"] = float(start)
    # The integration tier's module fixture is Sensor(): BTF, BPF compile, load and attach.
    sensor = re.search(r"([\d.]+)s setup\s+tests/integration/test_sensor\.py::", run.text("pytest.log"))
    if sensor:
        row["bpf_compile_load_s"] = float(sensor.group(1))
    with (CACHE / "timings.jsonl").open("a") as f:
        f.write(json.dumps(row) + "\n")
    return row


def _boot(kernel: KernelSpec) -> GuestRun:
    # Kept after the run (replaced by the next one) for a look at the guest's logs.
    work = CACHE / "runs" / kernel.name
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    return run_guest(kernel, work, GUEST_TESTS, test_timeout=GUEST_TEST_TIMEOUT, expect=kernel.exit_detection)


@pytest.fixture(scope="module")
def guests(request: pytest.FixtureRequest) -> Iterator[dict[str, Future[GuestRun]]]:
    """Every selected kernel's guest, all booted at once.

    An emulated guest leaves much of the host's two cores idle (it waits on 9p and on its own
    timers), so three side by side took about as long as the slowest alone (measured: see README).
    """
    selected = {
        item.callspec.params["kernel"].name
        for item in request.session.items
        if isinstance(item, pytest.Function)
        and hasattr(item, "callspec")
        and "kernel" in item.callspec.params
    }
    with ThreadPoolExecutor(max_workers=len(KERNELS)) as pool:
        yield {k.name: pool.submit(_boot, k) for k in KERNELS if k.name in selected}


@pytest.mark.timeout(GUEST_TEST_TIMEOUT + 900)
@pytest.mark.parametrize("kernel", KERNELS, ids=[k.name for k in KERNELS])
def test_daemon_on_kernel(
    kernel: KernelSpec, guests: dict[str, Future[GuestRun]], record_property: pytest.RecordProperty
) -> None:
    """Boot the kernel; in it, the daemon starts, records every exec of the workloads, and the guest's
    tests all pass. A failure names the kernel, the tests that failed in it and the guest's logs."""
    run = guests[kernel.name].result()
    for k, v in _record_timings(run).items():
        record_property(k, v)
    cases = run.junit_cases()
    ok = run.text("pytest.rc").strip() == "0" and cases and all(text is None for _, text in cases)
    assert ok, _report(run)
    assert run.text("release").strip() == run.release, _report(run)
