"""Pieces of bench/run: processes (procs), the systems under test (systems), what is measured
during a run (measure), what is run (scenarios) and what is written (report)."""
