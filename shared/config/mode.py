"""POOLKEEPER_MODE: `act` does what Poolkeeper decides; `observe` (a fresh deployment's default,
docs/deploy.md) decides and records the same, as dry runs, and writes nothing to Azure or a
cluster. Unset means `act`, so that deployments made before the setting existed keep acting."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

MODE_SETTING = "POOLKEEPER_MODE"


class Mode(StrEnum):
    ACT = "act"
    OBSERVE = "observe"


def mode_from_settings(settings: Mapping[str, str]) -> Mode:
    """The mode the settings ask for; ConfigError naming the setting for anything else."""
    from shared.config.pools import ConfigError

    raw = settings.get(MODE_SETTING, "").strip()
    if not raw:
        return Mode.ACT
    try:
        return Mode(raw.lower())
    except ValueError:
        problem = (
            f"{MODE_SETTING} is {raw!r}; set it to 'observe' (decide and record only) or 'act'"
        )
        raise ConfigError("app settings", [problem]) from None


def observe_refusal() -> str:
    """Why an operator's job is refused in observe mode, and how to change that."""
    return (
        f"Poolkeeper is in observe mode ({MODE_SETTING}=observe): it records what it would do "
        'and changes nothing. Send the job with "dry_run": true to see its plan, or switch to '
        f"act: set the app setting {MODE_SETTING}=act (azd env set {MODE_SETTING} act && azd "
        "provision), after GET /api/preflight passes"
    )
