"""Poolkeeper's configuration: the pools it may manage (its allow-list) and, per pool, the
sections for capacity, patching, images and repair; one module per section."""

from shared.config.capacity import CapacitySettings
from shared.config.pools import (
    POOLS_FILE_SETTING,
    POOLS_SETTING,
    Config,
    ConfigError,
    Pool,
    PoolNotFound,
    load_config,
    parse_config,
)

__all__ = [
    "POOLS_FILE_SETTING",
    "POOLS_SETTING",
    "CapacitySettings",
    "Config",
    "ConfigError",
    "Pool",
    "PoolNotFound",
    "load_config",
    "parse_config",
]
