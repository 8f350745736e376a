"""`gslb check` and `gslb serve` on bad input: every problem at once, one line each, no traceback.

tests/data/zones_broken/ holds four files with many mistakes between them; each expected line
below is `file: key.path: message`, as STYLE.md section 2 describes.
"""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

from dnsserver import BROKEN_ZONES, EXAMPLE_ZONES, TEST_GEOIP, WIRE_ZONES, gslb_command

TIMEOUT = 20

RECORDS = "records.yaml"
EXPECTED = [
    ("duplicate.yaml", "", "YAML error at line 6, column 3: duplicate key 'www'"),
    # The `{` opened on line 5 is never closed; the parser notices on line 6, the mistake is on 5.
    ("syntax.yaml", "", "YAML error at line 5, column 8: this flow mapping is not closed ("),
    ("no-origin.yaml", "origin", "missing; set the zone's name, like 'gslb.example.com.'"),
    (RECORDS, "colour", "unknown key; expected one of"),
    (RECORDS, "records.bad-ip.value", "must be an IPv4 address, got '192.0.2.300'"),
    (RECORDS, "records.bad-ip6.value", "must be an IPv6 address, got '2001:db8::g'"),
    (RECORDS, "records.list-ip.values[1]", "must be an IPv4 address, got '10.0.0'"),
    (RECORDS, "records.weird.type", "must be one of A, AAAA, CNAME, MX, TXT, SRV, CAA, PTR, NS, got 'BOGUS'"),
    (RECORDS, "records.extra.weight", "unknown key for an A record"),
    (RECORDS, "records.rel.value", "'www' must be fully qualified, ending in '.'"),
    (RECORDS, "records.both[0]", "a CNAME cannot stand beside other records at the same name"),
    (RECORDS, "records.neg-ttl[0].ttl", "ttl must be an integer from 0 to 2147483647, got -5"),
    (RECORDS, "records.word-ttl[0].ttl", "ttl must be an integer from 0 to 2147483647, got 'forever'"),
    (RECORDS, "records.mail.value", "must be <preference> <exchange>, like '10 mail.example.com.'"),
    (RECORDS, "records.txt.sub", "TXT cannot stand below the delegation sub.broken.example."),
]


def run_gslb(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(gslb_command(*args), capture_output=True, text=True, timeout=TIMEOUT, cwd=cwd)


def expected_line_start(file: str, path: str, message: str, directory: Path = BROKEN_ZONES) -> str:
    prefix = f"{directory / file}: "
    return prefix + (f"{path}: " if path else "") + message


def problem_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if not line.startswith("gslb: ")]


def assert_reports_every_problem(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    lines = problem_lines(result.stderr)
    missing = [
        expected_line_start(*item) for item in EXPECTED
        if not any(line.startswith(expected_line_start(*item)) for line in lines)
    ]
    assert not missing, "problems not reported:\n" + "\n".join(missing) + "\n-- stderr --\n" + result.stderr
    assert result.stderr.splitlines()[-1] == f"gslb: {len(lines)} problems found"
    assert len(lines) == len(EXPECTED), "\n".join(lines)


# -- gslb check ---------------------------------------------------------------------------------

def test_check_reports_every_problem_in_every_file_at_once():
    result = run_gslb("check", "--zones", str(BROKEN_ZONES), "--geoip", str(TEST_GEOIP))
    assert_reports_every_problem(result)
    assert result.stdout == ""


def test_check_problem_lines_are_sorted_by_file():
    result = run_gslb("check", "--zones", str(BROKEN_ZONES), "--geoip", str(TEST_GEOIP))
    files = [line.split(": ", 1)[0] for line in problem_lines(result.stderr)]
    assert files == sorted(files)


def test_serve_prints_the_same_problems_and_exits_1_without_listening():
    check = run_gslb("check", "--zones", str(BROKEN_ZONES), "--geoip", str(TEST_GEOIP))
    serve = run_gslb("serve", "--zones", str(BROKEN_ZONES), "--geoip", str(TEST_GEOIP), "--listen", "127.0.0.1:0")
    assert_reports_every_problem(serve)
    assert problem_lines(serve.stderr) == problem_lines(check.stderr)
    assert "listening" not in serve.stdout


@pytest.mark.parametrize("zones", [WIRE_ZONES, EXAMPLE_ZONES], ids=["wire", "example"])
def test_check_valid_directory_exits_0(zones):
    result = run_gslb("check", "--zones", str(zones), "--geoip", str(TEST_GEOIP))
    assert result.returncode == 0, result.stderr
    count = len(list(zones.glob("*.yaml")))
    assert result.stdout.strip() == f"gslb: {count} zone{'s' if count != 1 else ''} OK in {zones}"
    assert "Traceback" not in result.stderr


def test_check_missing_directory_is_one_problem(tmp_path):
    missing = tmp_path / "nowhere"
    result = run_gslb("check", "--zones", str(missing), "--geoip", str(TEST_GEOIP))
    assert result.returncode == 1
    assert problem_lines(result.stderr) == [f"{missing}: zones directory not found; pass --zones DIR"]


def write_zone(directory: Path, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "lone.example.yaml").write_text(text)
    return directory


@pytest.mark.parametrize("ttl", ["-5", "forever"])
def test_check_lone_record_with_a_bad_ttl_is_a_problem_not_a_crash(tmp_path, ttl):
    zones = write_zone(tmp_path / "zones", f"""\
origin: lone.example.
ns: [ns1.example.net.]
records:
  www: {{type: A, value: 192.0.2.7, ttl: {ttl}}}
""")
    result = run_gslb("check", "--zones", str(zones), "--geoip", str(TEST_GEOIP))
    assert "Traceback" not in result.stderr
    assert result.returncode == 1
    file = zones / "lone.example.yaml"
    assert problem_lines(result.stderr) == [
        f"{file}: records.www.ttl: ttl must be an integer from 0 to 2147483647, got "
        + (repr(ttl) + "; durations like 30s, 5m, 1h, 1d work too" if ttl == "forever" else ttl)
    ]


# -- the server config file ---------------------------------------------------------------------

@pytest.mark.parametrize("tcp", ["{idle_timeout: 1, max_connections: 3}", "{idle_timeout: 0.5, max_connections: 1}"])
def test_check_accepts_a_config_with_tcp_limits(tmp_path, tcp):
    config = tmp_path / "gslb.yaml"
    config.write_text(f"tcp: {tcp}\n")
    result = run_gslb("check", "--config", str(config), "--zones", str(WIRE_ZONES), "--geoip", str(TEST_GEOIP))
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("tcp", ["{idle_timeout: 1}", "{max_connections: 3}"])
def test_config_tcp_key_alone_is_accepted(tmp_path, tcp):
    config = tmp_path / "gslb.yaml"
    config.write_text(f"tcp: {tcp}\n")
    result = run_gslb("check", "--config", str(config), "--zones", str(WIRE_ZONES), "--geoip", str(TEST_GEOIP))
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("text", "path", "message"),
    [
        ("tcp: {idle_timeout: 0, max_connections: 3}", "tcp", "tcp idle timeout must be > 0 seconds"),
        ("tcp: {idle_timeout: 1, max_connections: 0}", "tcp", "tcp max connections must be >= 1"),
        ("tcp: {idle: 1}", "tcp", "must be a mapping with idle_timeout (seconds) and/or max_connections"),
        ("log_level: loud", "log_level", "must be one of debug, info, warning, error"),
        ("listen: nowhere", "listen[0]", "listen address 'nowhere' must be HOST:PORT"),
        ("colour: blue", "colour", "unknown setting; expected one of"),
    ],
)
def test_bad_config_is_one_line_per_problem(tmp_path, text, path, message):
    config = tmp_path / "gslb.yaml"
    config.write_text(text + "\n")
    result = run_gslb("check", "--config", str(config), "--zones", str(WIRE_ZONES), "--geoip", str(TEST_GEOIP))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    (line,) = problem_lines(result.stderr)
    assert line.startswith(f"{config}: {path}: {message}"), line


# -- gslb serve: listen errors ------------------------------------------------------------------

@pytest.mark.parametrize(
    ("listen", "message"),
    [
        ("127.0.0.1:notaport", "listen address '127.0.0.1:notaport' must be HOST:PORT"),
        ("127.0.0.1", "listen address '127.0.0.1' must be HOST:PORT"),
        ("localhost:53", "listen address 'localhost:53': 'localhost' is not an IP address"),
        ("127.0.0.1:70000", "listen address '127.0.0.1:70000': port must be 0-65535"),
    ],
)
def test_serve_bad_listen_address_is_a_one_line_error(listen, message):
    result = run_gslb("serve", "--zones", str(WIRE_ZONES), "--geoip", str(TEST_GEOIP), "--listen", listen)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    # One line naming the problem, then the usual count line.
    (line,) = problem_lines(result.stderr)
    assert line.startswith(f"command line: --listen: {message}"), line
    assert result.stderr.splitlines()[-1] == "gslb: 1 problem found"
    assert result.stdout == ""


@pytest.mark.parametrize("kind", [socket.SOCK_DGRAM, socket.SOCK_STREAM], ids=["udp-taken", "tcp-taken"])
def test_serve_on_an_address_in_use_exits_1_with_one_line(kind):
    with socket.socket(socket.AF_INET, kind) as taken:
        taken.bind(("127.0.0.1", 0))
        if kind == socket.SOCK_STREAM:
            taken.listen()
        port = taken.getsockname()[1]
        result = run_gslb("serve", "--zones", str(WIRE_ZONES), "--geoip", str(TEST_GEOIP),
                          "--listen", f"127.0.0.1:{port}")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [f"gslb: cannot listen on 127.0.0.1:{port}: Address already in use"]
    assert "listening on" not in result.stdout


# -- hostile and mistaken zone files (issue 11 items 5, 6, 8; issue 13 rough edge 7) ------------

LONE = "lone.example.yaml"


def lone_zone(records: str, head: str = "") -> str:
    return f"origin: lone.example.\nns: [ns1.example.net.]\n{head}records:\n{records}"


def check_one(tmp_path: Path, text: str) -> tuple[subprocess.CompletedProcess, Path]:
    zones = write_zone(tmp_path / "zones", text)
    return run_gslb("check", "--zones", str(zones), "--geoip", str(TEST_GEOIP)), zones / LONE


def billion_laughs(levels: int = 9) -> str:
    """478 bytes of this (7 levels) once made a 34.7 MB one-line error and a 34.7 MB /status."""
    parts = ['&l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    parts += [f"&l{i} [" + ",".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return "origin: lone.example.\nns: [ns1.example.net.]\nttl: [" + ", ".join(parts) + "]\nrecords: {}\n"


@pytest.mark.parametrize("levels", [7, 9])
def test_check_refuses_a_yaml_alias_bomb_with_one_short_line(tmp_path, levels):
    result, file = check_one(tmp_path, billion_laughs(levels))
    assert result.returncode == 1
    assert len(result.stderr) < 400, f"{len(result.stderr)} bytes of stderr"
    assert problem_lines(result.stderr) == [
        (f"{file}: YAML error at line 3, column 202: aliases here repeat more than 10,000 nodes (an alias bomb?); "
         "write the values out or use fewer aliases")]


def test_serve_refuses_a_yaml_alias_bomb_at_once(tmp_path):
    zones = write_zone(tmp_path / "zones", billion_laughs(9))
    result = run_gslb("serve", "--zones", str(zones), "--geoip", str(TEST_GEOIP), "--listen", "127.0.0.1:0",
                      "--api", "off")
    assert result.returncode == 1
    (line,) = problem_lines(result.stderr)
    assert line.startswith(f"{zones / LONE}: YAML error at line 3, column 202: aliases here repeat") and len(line) < 300
    assert "listening" not in result.stdout


def test_a_long_value_is_echoed_cut_to_80_characters(tmp_path):
    value = "10.0.0." + "9" * 5000
    result, file = check_one(tmp_path, lone_zone(f"  www: {{type: A, value: '{value}'}}\n"
                                                  f"  big: {{type: A, value: 192.0.2.1, ttl: [{', '.join(['1'] * 5000)}]}}\n"))
    shown_value = repr(value)[:77] + "..."
    assert problem_lines(result.stderr) == [
        f"{file}: records.www.value: must be an IPv4 address, got {shown_value}",
        (f"{file}: records.big.ttl: ttl must be an integer from 0 to 2147483647, got "
         "[1, 1, 1, 1, 1, 1, ...]"),
    ]


def test_check_refuses_cname_loops_inside_a_zone_naming_the_chain(tmp_path):
    result, file = check_one(tmp_path, lone_zone(
        "  a: {type: CNAME, value: b.lone.example.}\n"
        "  b: {type: CNAME, value: A.Lone.Example.}\n"  # names compare case-insensitively
        "  self: {type: CNAME, value: self.lone.example.}\n"
        "  into: {type: CNAME, value: a.lone.example.}\n"  # leads into the a/b loop: reported there
        "  out: {type: CNAME, value: www.elsewhere.example.}\n"
        "  ok: {type: CNAME, value: www.lone.example.}\n"
        "  www: {type: A, value: 192.0.2.1}\n"))
    assert result.returncode == 1
    assert problem_lines(result.stderr) == [
        (f"{file}: records.a: CNAME loop a.lone.example. -> b.lone.example. -> a.lone.example.; "
         "a chain of CNAMEs must end at a name with records"),
        (f"{file}: records.self: CNAME loop self.lone.example. -> self.lone.example.; "
         "a chain of CNAMEs must end at a name with records"),
    ]


def test_a_cname_chain_that_ends_is_fine(tmp_path):
    result, _ = check_one(tmp_path, lone_zone(
        "  a: {type: CNAME, value: b.lone.example.}\n"
        "  b: {type: CNAME, value: c.lone.example.}\n"
        "  c: {type: A, value: 192.0.2.1}\n"))
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(("rtype", "value", "article"), [
    ("A", "192.0.2.1", "an A"), ("AAAA", "2001:db8::1", "an AAAA"), ("CNAME", "x.example.", "a CNAME"),
    ("MX", "10 mx.example.", "an MX"), ("TXT", "hi", "a TXT"), ("SRV", "1 1 1 x.example.", "an SRV"),
    ("CAA", '0 issue "ca.example"', "a CAA"), ("PTR", "x.example.", "a PTR"), ("NS", "ns.example.", "an NS"),
])
def test_unknown_key_message_has_the_right_article(tmp_path, rtype, value, article):
    result, file = check_one(tmp_path, lone_zone(f"  sub:\n    type: {rtype}\n    value: '{value}'\n    colour: red\n"))
    assert problem_lines(result.stderr)[0] == (
        f"{file}: records.sub.colour: unknown key for {article} record; "
        "expected one of type, value, values, ttl (or pools for a GSLB record)")


@pytest.mark.parametrize("ttl", ["30s", "5m", "1h", "1d", "1h30m", "300", "'300'", "0"])
def test_check_accepts_durations_for_ttls_as_for_check_intervals(tmp_path, ttl):
    result, _ = check_one(tmp_path, lone_zone(
        f"  www: {{type: A, value: 192.0.2.7, ttl: {ttl}}}\n", head=f"ttl: {ttl}\nsoa: {{refresh: 1h, expire: 2w}}\n"))
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(("ttl", "message"), [
    ("1.5s", "ttl must be an integer from 0 to 2147483647, got '1.5s'; durations like 30s, 5m, 1h, 1d work too"),
    ("500ms", "ttl must be an integer from 0 to 2147483647, got '500ms'; durations like 30s, 5m, 1h, 1d work too"),
    ("100000d", "ttl must be from 0 to 2147483647 seconds, got '100000d' (8640000000 seconds)"),
])
def test_a_ttl_that_is_no_whole_second_duration_is_refused(tmp_path, ttl, message):
    result, file = check_one(tmp_path, lone_zone(f"  www: {{type: A, value: 192.0.2.7, ttl: {ttl}}}\n"))
    assert problem_lines(result.stderr) == [f"{file}: records.www.ttl: {message}"]


def test_a_yaml_key_without_its_colon_is_reported_on_its_own_line(tmp_path):
    result, file = check_one(tmp_path, lone_zone("  www\n  mail: {type: A, value: 192.0.2.2}\n"))
    (line,) = problem_lines(result.stderr)
    assert line.startswith(f"{file}: YAML error at line 4: a ':' is missing at the end of this line"), line


def test_check_refuses_a_sparse_3gb_zone_file_at_once_without_reading_it(tmp_path):
    zones = write_zone(tmp_path / "zones", lone_zone("  www: {type: A, value: 192.0.2.7}\n"))
    with (zones / "x.yaml").open("wb") as file:
        file.truncate(3 * 2**30)  # sparse: costs no disk
    command = gslb_command("check", "--zones", str(zones), "--geoip", str(TEST_GEOIP))
    with (tmp_path / "stderr").open("w+") as stderr:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)
        _, status, usage = os.wait4(process.pid, 0)  # this child's own peak RSS
        process.returncode = os.waitstatus_to_exitcode(status)
        stderr.seek(0)
        text = stderr.read()
    assert process.returncode == 1
    assert problem_lines(text) == [(f"{zones / 'x.yaml'}: not read: the file is 3 GiB, more than the 64 MiB limit "
                                    "(max_zone_file_size); is it the right file?")]
    assert usage.ru_maxrss < 400 * 1024, f"peak RSS {usage.ru_maxrss} KiB"  # it was 5 GB


@pytest.mark.parametrize("text", ["ttl: " + "[" * 100_000 + "]" * 100_000 + "\n", "- " * 100_000 + "x\n"],
                         ids=["flow", "block"])
def test_check_refuses_deep_nesting_with_one_line_instead_of_crashing(tmp_path, text):
    # 200 kB of `[` made libyaml's recursive composer overflow the C stack: SIGSEGV, nothing logged.
    result, file = check_one(tmp_path, text)
    assert result.returncode == 1, result.returncode
    (line,) = problem_lines(result.stderr)
    assert line.startswith(f"{file}: YAML error at line 1, column ") and line.endswith("nested more than 64 levels deep")


@pytest.mark.parametrize(("value", "problem"), [
    ("64MiB", None), ("1000000", None),
    ("big", "max_zone_file_size: must be a size in bytes, or like 64MiB, 512KiB, 1GiB; got 'big'"),
    ("0", "max_zone_file_size: must be at least 1 byte, got 0"),
])
def test_config_max_zone_file_size(tmp_path, value, problem):
    config = tmp_path / "gslb.yaml"
    config.write_text(f"max_zone_file_size: {value}\n")
    result = run_gslb("check", "--config", str(config), "--zones", str(WIRE_ZONES), "--geoip", str(TEST_GEOIP))
    if problem is None:
        assert result.returncode == 0, result.stderr
    else:
        assert problem_lines(result.stderr) == [f"{config}: {problem}"]
