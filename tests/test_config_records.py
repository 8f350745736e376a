"""Records built from zone YAML name themselves two ways: `path` (`records.app`) for problems in
the file, `display_name` (`app.gslb.example.com. A`) for runtime logs, metrics and status."""

from __future__ import annotations

from dnsserver import EXAMPLE_ZONES
from gslb.config.zonefile import load_zone_file


def test_gslb_records_have_a_key_path_for_problems_and_a_dns_name_and_type_for_logs():
    zone, problems = load_zone_file(EXAMPLE_ZONES / "gslb.example.com.yaml")
    assert not list(problems) and zone is not None
    records = {record.path: record.display_name for node in zone.nodes.values() for record in node.dynamic.values()}
    assert records == {"records.www": "www.gslb.example.com. A", "records.app": "app.gslb.example.com. A"}
