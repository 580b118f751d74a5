"""SensorSettings come from the config model: defaults declared once (config.py), never restated."""

from __future__ import annotations

import dataclasses

from settings import default_sensor_settings

from claude_audit.config import Config, parse_config
from claude_audit.sensor import SensorSettings


def test_from_config_takes_every_kernel_setting_from_the_model() -> None:
    """Each field of the settings is the config's value, including the map sizes and candidate budget."""
    cfg = parse_config(
        {
            "capture": {"max_session_roots": 64, "max_pending_roots": 32, "max_tracked_processes": 2048},
            "discovery": {"candidates_per_uid_per_second": 3, "comm_names": ["x"]},
        }
    )
    s = SensorSettings.from_config(cfg)
    assert (s.max_session_roots, s.max_pending_roots, s.max_tracked_processes) == (64, 32, 2048)
    assert s.candidates_per_uid_per_second == 3
    assert s.candidate_comms == ("x",)
    assert s.argv_max_bytes == cfg.capture.argv_max_bytes


def test_defaults_are_the_config_defaults() -> None:
    """The tests' default settings are from_config(Config()), with overrides applied on top."""
    assert default_sensor_settings() == SensorSettings.from_config(Config())
    s = default_sensor_settings(max_pending_roots=16)
    assert s.max_pending_roots == 16
    assert (
        dataclasses.replace(s, max_pending_roots=Config().capture.max_pending_roots)
        == default_sensor_settings()
    )


def test_program_state_from_link_fdinfo() -> None:
    """A link whose fdinfo names a program counts as attached; all expected attached is "attached"."""
    from claude_audit.sensor import program_state

    link = b"pos:\t0\nlink_type:\traw_tracepoint\nlink_id:\t1\nprog_tag:\tab\nprog_id:\t4608\n"
    full = program_state({"sched_process_exec": link, "sched_process_fork": link}, 2)
    assert full == {
        "state": "attached",
        "programs_attached": 2,
        "programs_expected": 2,
        "attached": ["sched_process_exec", "sched_process_fork"],
    }
    gone = program_state({"sched_process_exec": link, "sched_process_fork": b""}, 2)
    assert gone["state"] == "degraded" and gone["attached"] == ["sched_process_exec"]
    assert program_state({}, 4)["state"] == "degraded"
