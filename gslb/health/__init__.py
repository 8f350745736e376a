"""Health checks: probes, rise/fall state, admin overrides."""
