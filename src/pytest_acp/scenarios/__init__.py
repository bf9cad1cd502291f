"""Scenario files: scripted runs of a bridge, and failing runs written back as scenario files.

This room owns playing a scenario file through the harness and judging it (``run``), writing a
failing state-machine example as a scenario file (``export``, and ``realtime_export`` for real
time, where the file is the replay), and finding the pytest project ``acp-sim run`` imports a
bridge from (``project``). Collecting scenario files as pytest items is the plugin's
(``pytest_acp.collect``).
"""
