"""The sensor settings of the default config, for tests that load the BPF program themselves."""

from __future__ import annotations

import dataclasses
from typing import Any

from claude_audit.config import Config
from claude_audit.sensor import SensorSettings


def default_sensor_settings(**overrides: Any) -> SensorSettings:
    """SensorSettings.from_config(Config()) with some fields replaced."""
    return dataclasses.replace(SensorSettings.from_config(Config()), **overrides)
