"""`gslb serve` as a first hour with the README meets it: which zones it serves (the checkout's
./zones, or the packaged example when installed elsewhere), a bad flag, --log-level's help,
a host name in --listen, --pid-file."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dnsserver import REPO, STOP_TIMEOUT, TEST_GEOIP, GslbProcess, gslb_command, wait_for

TIMEOUT = 20
ZONE = """origin: {origin}
ns: [ns1.{origin}]
soa: {{mname: ns1.{origin}, rname: hostmaster.{origin}, serial: 7}}
records:
  ns1: {{type: A, value: 192.0.2.53}}
  mine: {{type: TXT, value: "{text}"}}
"""


def run_gslb(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(gslb_command(*args), capture_output=True, text=True, timeout=TIMEOUT, cwd=cwd)


def serve_in(cwd: Path, log_dir: Path, *args: str, pythonpath: Path = REPO, probe_name: str) -> GslbProcess:
    """`gslb serve` without --zones, started from `cwd` with `pythonpath`'s gslb (GslbProcess
    always passes --zones and runs in the repository)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    stderr_path = log_dir / f"gslb-{time.monotonic_ns()}.stderr"
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    command = [sys.executable, "-m", "gslb", "serve", "--listen", "127.0.0.1:0", "--api", "off",
               "--geoip", str(TEST_GEOIP), *args]
    with stderr_path.open("wb") as stderr:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, cwd=cwd, env=env)
    server = GslbProcess(process, [], stderr_path)
    try:
        server._read_listeners(1, probe_name)
    except BaseException:
        server.stop()
        raise
    return server


def txt(server: GslbProcess, name: str) -> list[str]:
    reply = server.query(name, "TXT")
    return [rr.to_text() for rrset in reply.answer for rr in rrset]


# -- which zones: rough edge 1 ---------------------------------------------------------------------

def checkout(directory: Path, text: str) -> Path:
    """A directory laid out like a clone of gslb: pyproject.toml naming it, and zones/."""
    (directory / "zones").mkdir(parents=True)
    (directory / "pyproject.toml").write_text('[project]\nname = "gslb"\nversion = "0"\n')
    (directory / "zones" / "mine.test.yaml").write_text(ZONE.format(origin="mine.test.", text=text))
    return directory


def installed_copy(target: Path) -> Path:
    """gslb laid out the way `pip install .` puts it in site-packages: the package, and the
    repository's zones/ inside it as gslb/default_zones (pyproject.toml's package-dir)."""
    shutil.copytree(REPO / "gslb", target / "gslb", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "zones", target / "gslb" / "default_zones")
    return target


def test_serve_in_a_checkout_serves_its_zones_even_with_an_installed_copy(tmp_path):
    # The installed copy carries only the example zone; the checkout in front of the operator
    # has its own, which is what an edit to zones/ must change.
    site = installed_copy(tmp_path / "site-packages")
    work = checkout(tmp_path / "clone", "from the checkout")
    server = serve_in(work, tmp_path / "logs", pythonpath=site, probe_name="mine.test.")
    try:
        assert "gslb: serving zones from ./zones (the checkout)" in server.stdout_lines
        assert txt(server, "mine.mine.test.") == ['"from the checkout"']
    finally:
        server.stop()


def test_serve_elsewhere_serves_the_packaged_example_and_says_so(tmp_path):
    site = installed_copy(tmp_path / "site-packages")
    elsewhere = tmp_path / "home"
    elsewhere.mkdir()
    server = serve_in(elsewhere, tmp_path / "logs", pythonpath=site, probe_name="gslb.example.com.")
    try:
        packaged = site / "gslb" / "default_zones"
        assert f"gslb: serving zones from {packaged} (the packaged example)" in server.stdout_lines
        reply = server.query("static.gslb.example.com.", "A")
        assert sorted(rr.to_text() for rrset in reply.answer for rr in rrset) == ["192.0.2.80", "192.0.2.81"]
    finally:
        server.stop()


def test_serve_from_the_repository_names_the_checkout(tmp_path):
    server = serve_in(REPO, tmp_path, probe_name="gslb.example.com.")
    try:
        assert "gslb: serving zones from ./zones (the checkout)" in server.stdout_lines
    finally:
        server.stop()


def test_serve_with_zones_names_the_folder_it_was_given(tmp_path):
    work = checkout(tmp_path / "clone", "given")
    server = serve_in(tmp_path, tmp_path / "logs", "--zones", str(work / "zones"), probe_name="mine.test.")
    try:
        assert f"gslb: serving zones from {work / 'zones'}" in server.stdout_lines
    finally:
        server.stop()


# -- the command line: rough edge 5 ----------------------------------------------------------------

def test_a_bad_flag_after_serve_prints_serves_usage():
    result = run_gslb("serve", "--bad-flag")
    assert result.returncode == 2
    assert result.stderr.startswith("usage: gslb serve ")
    assert result.stderr.splitlines()[-1] == "gslb serve: error: unrecognized arguments: --bad-flag"


def test_a_bad_flag_before_the_command_prints_the_top_level_usage():
    result = run_gslb("--bad-flag", "check")
    assert result.returncode == 2
    assert result.stderr.startswith("usage: gslb [-h]")
    assert result.stderr.splitlines()[-1] == "gslb: error: unrecognized arguments: --bad-flag"


@pytest.mark.parametrize("command", ["reload", "status", "check"])
def test_every_command_gets_its_own_usage(command):
    result = run_gslb(command, "--bad-flag")
    assert result.returncode == 2 and result.stderr.startswith(f"usage: gslb {command} ")


def test_log_level_has_help():
    help_text = " ".join(run_gslb("serve", "--help").stdout.split())
    assert "--log-level LEVEL the least severe log lines written to standard error: debug, info, warning, error" \
        in help_text


def test_a_host_name_in_listen_gets_the_addresses_to_use():
    # localhost comes from /etc/hosts: nothing leaves the machine to resolve it.
    result = run_gslb("serve", "--geoip", str(TEST_GEOIP), "--listen", "localhost:1053")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    line = result.stderr.splitlines()[0]
    assert line.startswith("command line: --listen: listen address 'localhost:1053': 'localhost' is not an IP "
                           "address; use an address: localhost is 127.0.0.1"), line
    assert "(--listen 127.0.0.1:1053" in line


def test_a_host_name_in_the_config_file_gets_the_same_hint(tmp_path):
    config = tmp_path / "gslb.yaml"
    config.write_text("listen: [localhost:53]\n")
    result = run_gslb("check", "--config", str(config), "--geoip", str(TEST_GEOIP))
    assert result.returncode == 1
    assert result.stderr.splitlines()[0].startswith(
        f"{config}: listen[0]: listen address 'localhost:53': 'localhost' is not an IP address; use an address: "
        "localhost is 127.0.0.1")


# -- --pid-file --------------------------------------------------------------------------------------

def test_pid_file_holds_the_server_pid_while_it_runs(tmp_path):
    pid_file = tmp_path / "run" / "gslb.pid"
    pid_file.parent.mkdir()
    server = serve_in(REPO, tmp_path, "--pid-file", str(pid_file), probe_name="gslb.example.com.")
    try:
        assert pid_file.read_text() == f"{server.process.pid}\n"
        server.process.terminate()
        assert server.process.wait(STOP_TIMEOUT) == 0
        wait_for(lambda: not pid_file.exists(), STOP_TIMEOUT, "the pid file to go at exit")
    finally:
        server.stop()


def test_an_unwritable_pid_file_stops_the_start(tmp_path):
    missing = tmp_path / "no-such-dir" / "gslb.pid"
    result = run_gslb("serve", "--geoip", str(TEST_GEOIP), "--listen", "127.0.0.1:0", "--api", "off",
                      "--pid-file", str(missing))
    assert result.returncode == 1
    assert f"gslb: --pid-file {missing}: cannot write it (No such file or directory)" in result.stderr.splitlines()
