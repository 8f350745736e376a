"""The admin state file: parsed with key paths, watched, kept on errors, written atomically."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from gslb.config.problems import Problems
from gslb.health.admin import NO_OVERRIDES, StateFile, parse_overrides, read_overrides, write_overrides
from gslb.health.status import Status


def test_keys_are_addresses_or_check_slash_address_and_values_up_down_drain():
    problems = Problems("state.yaml")
    overrides = parse_overrides({"198.51.100.10": "down", "2001:0db8::0001": "Drain", "web/203.0.113.20": "up"}, problems)
    assert not problems
    assert dict(overrides.by_address) == {"198.51.100.10": Status.DOWN, "2001:db8::1": Status.DRAIN}
    assert dict(overrides.by_check) == {("web", "203.0.113.20"): Status.UP}
    assert overrides.lookup("web", "203.0.113.20") is Status.UP
    assert overrides.lookup("db", "203.0.113.20") is None
    assert overrides.lookup(None, "2001:db8::1") is Status.DRAIN
    assert overrides.as_mapping() == {"198.51.100.10": "down", "2001:db8::1": "drain", "web/203.0.113.20": "up"}


def test_every_bad_entry_is_reported_by_its_key():
    problems = Problems("state.yaml")
    overrides = parse_overrides({"www": "down", "198.51.100.10": "off", "/192.0.2.1": "up", "192.0.2.2": 1,
                                 "192.0.2.3": "up"}, problems)
    assert [(p.path, p.message) for p in problems] == [
        ("www", "'www' is not an IP address; keys are an endpoint address or CHECK/ADDRESS"),
        ("198.51.100.10", "must be up, down or drain, got 'off'"),
        ("/192.0.2.1", "'/192.0.2.1': the check name before '/' is empty; keys are an endpoint address or CHECK/ADDRESS"),
        ("192.0.2.2", "must be up, down or drain, got 1"),
    ]
    assert dict(overrides.by_address) == {"192.0.2.3": Status.UP}
    problems = Problems("state.yaml")
    parse_overrides(["192.0.2.1"], problems)
    assert [p.path for p in problems] == [""]


def test_a_missing_or_empty_file_means_no_overrides(tmp_path):
    assert read_overrides(tmp_path / "absent.yaml") == (NO_OVERRIDES, [])
    (tmp_path / "empty.yaml").write_text("# nothing yet\n")
    assert read_overrides(tmp_path / "empty.yaml") == (NO_OVERRIDES, [])


def test_poll_reads_changes_only_and_keeps_the_last_good_overrides_on_a_bad_file(tmp_path, caplog):
    caplog.set_level(logging.INFO, "gslb.health.admin")
    path = tmp_path / "state.yaml"
    state = StateFile(path)
    assert state.poll() == NO_OVERRIDES  # first look: missing, no overrides
    assert state.poll() is None  # unchanged
    path.write_text("198.51.100.10: down\n")
    first = state.poll()
    assert first is not None and first.lookup(None, "198.51.100.10") is Status.DOWN
    assert state.poll() is None
    caplog.clear()
    path.write_text("198.51.100.10: down\n198.51.100.11: sideways\n")
    assert state.poll() is None
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [f"admin state file {path}: 198.51.100.11: must be up, down or drain, got 'sideways'; "
                      "keeping the 1 previous override(s)"]
    assert state.overrides is first
    path.write_text("198.51.100.10: down\n198.51.100.11: drain\n")
    assert len(state.poll()) == 2
    path.unlink()
    assert state.poll() == NO_OVERRIDES
    assert any("is gone" in r.getMessage() for r in caplog.records)


def test_a_yaml_error_is_one_line_too(tmp_path, caplog):
    path = tmp_path / "state.yaml"
    path.write_text("198.51.100.10: [down\n")
    state = StateFile(path)
    assert state.poll() is None
    assert len([r for r in caplog.records if r.levelno >= logging.ERROR]) == 1
    assert "YAML error" in caplog.records[-1].getMessage() and str(path) in caplog.records[-1].getMessage()


def test_set_override_writes_atomically_and_keeps_other_entries(tmp_path, monkeypatch):
    path = tmp_path / "state.yaml"
    path.write_text("203.0.113.10: drain\n")
    state = StateFile(path)
    replaced: list[tuple[str, str]] = []
    real_replace = os.replace

    def spy(source, target):  # the new content lands by rename, never by rewriting in place
        replaced.append((str(source), str(target)))
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", spy)
    state.set_override("198.51.100.10", "down")
    state.set_override("203.0.113.20", Status.UP, check="web")
    assert len(replaced) == 2 and all(target == str(path) for _, target in replaced)
    assert all(Path(source).parent == tmp_path for source, _ in replaced)
    overrides, problems = read_overrides(path)
    assert problems == []
    assert overrides.as_mapping() == {"203.0.113.10": "drain", "198.51.100.10": "down", "web/203.0.113.20": "up"}
    state.set_override("203.0.113.10", None)
    assert read_overrides(path)[0].as_mapping() == {"198.51.100.10": "down", "web/203.0.113.20": "up"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.yaml"]  # no temporary files left
    with pytest.raises(ValueError):
        state.set_override("198.51.100.10", "sideways")
    with pytest.raises(ValueError):
        state.set_override("not-an-address", "down")


def test_write_overrides_leaves_a_readable_commented_file(tmp_path):
    path = tmp_path / "state.yaml"
    write_overrides(path, {})
    assert read_overrides(path) == (NO_OVERRIDES, [])
    assert path.read_text().startswith("# gslb admin overrides")


def test_the_state_file_comes_from_the_config_file_relative_to_it_or_from_the_flag(tmp_path):
    from gslb.cli import build_parser
    from gslb.settings import load_settings

    config = tmp_path / "gslb.yaml"
    config.write_text("state: run/overrides.yaml\n")
    settings, problems = load_settings(config, {})
    assert problems == [] and settings.state == tmp_path.resolve() / "run" / "overrides.yaml"
    settings, _ = load_settings(config, {"state": "/var/lib/gslb/state.yaml"})
    assert settings.state == Path("/var/lib/gslb/state.yaml")
    assert load_settings(None, {})[0].state is None
    args = build_parser().parse_args(["serve", "--state", "x.yaml"])
    assert args.state == "x.yaml"
