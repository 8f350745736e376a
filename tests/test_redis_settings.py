"""The settings of shared health: `redis:`, `vantage:`, `vantages:`, `stale_after:`, `probe_source:`
in the server config and `--redis`/`--vantage`/`--source` flags, each problem at its key."""

from __future__ import annotations

from pathlib import Path

import pytest

from gslb.cli import main
from gslb.health.redis_link import redact
from gslb.settings import load_settings


def test_the_shared_health_settings_parse(tmp_path: Path) -> None:
    config = tmp_path / "gslb.yaml"
    config.write_text("redis: rediss://gslb:secret@10.0.0.5:6380/0\nvantages: [eu, us-east]\nvantage: eu\n"
                      "stale_after: 1m\nredis_prefix: 'prod:gslb:'\nprobe_source: 10.1.2.3\n")
    settings, problems = load_settings(config, {})
    assert problems == []
    assert (settings.redis, settings.vantages, settings.vantage, settings.stale_after, settings.redis_prefix,
            settings.probe_source) == ("rediss://gslb:secret@10.0.0.5:6380/0", ("eu", "us-east"), "eu", 60.0,
                                       "prod:gslb:", "10.1.2.3")
    flagged, problems = load_settings(config, {"redis": "redis://127.0.0.1:6379/0", "vantage": "asia"})
    assert problems == [] and flagged.redis == "redis://127.0.0.1:6379/0" and flagged.vantage == "asia"


def test_without_redis_nothing_changes() -> None:
    settings, problems = load_settings(None, {})
    assert problems == [] and settings.redis is None and settings.vantage is None and settings.stale_after == 30.0


@pytest.mark.parametrize("text, where", [
    ("redis: http://x\n", "redis: must be a redis://"),
    ("vantages: eu\n", "vantages: must list"),
    ("vantages: [eu, 'a b']\n", "vantages[1]: must be a vantage name"),
    ("stale_after: never\n", "stale_after: must be a duration"),
    ("vantage: ''\n", "vantage: must be a vantage name"),
    ("probe_source: somewhere\n", "probe_source: must be a local IP address"),
    ("redis_prefix: 'gslb:*'\n", "redis_prefix: must be a key prefix"),
])
def test_bad_settings_are_reported_at_their_key(tmp_path: Path, text: str, where: str) -> None:
    config = tmp_path / "gslb.yaml"
    config.write_text(text)
    _settings, problems = load_settings(config, {})
    assert any(f"{config}: {where}" in str(problem) for problem in problems), [str(p) for p in problems]


def test_bad_flags_name_the_flag() -> None:
    _settings, problems = load_settings(None, {"redis": "localhost:6379", "vantage": "e u", "probe_source": "x"})
    texts = [str(problem) for problem in problems]
    assert any("--redis: must be a redis://" in t for t in texts)
    assert any("--vantage: must be a vantage name" in t for t in texts)
    assert any("--source: must be a local IP address" in t for t in texts)


def test_probe_needs_redis_and_a_vantage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["probe", "--vantage", "eu"]) == 2
    assert "gslb probe: give --redis URL" in capsys.readouterr().err
    assert main(["probe", "--redis", "redis://127.0.0.1:1/0"]) == 2
    assert "gslb probe: give --vantage NAME" in capsys.readouterr().err
    assert main(["serve", "--vantage", "eu"]) == 2
    assert "--vantage needs --redis URL" in capsys.readouterr().err


def test_passwords_never_reach_the_log() -> None:
    assert redact("redis://user:secret@10.0.0.5:6379/0") == "redis://user:***@10.0.0.5:6379/0"
    assert redact("rediss://:secret@[::1]:6380/0") == "rediss://:***@[::1]:6380/0"
    assert redact("redis://10.0.0.5:6379/0") == "redis://10.0.0.5:6379/0"
