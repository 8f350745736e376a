"""Health: check kinds (kinds.py, specs.py, checks.py), probes (probes.py, run by monitor.py),
sources of verdicts (sources.py: this process's probes, admin overrides, a worker's snapshot) and
the board that merges them into what selection reads (board.py, status.py)."""
