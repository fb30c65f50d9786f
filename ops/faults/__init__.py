"""Turnout's fault matrix: each provider fault (5xx, 429, reset, refused, hang, cut, stall,
malformed events, prefill refused, an outage, a hang under load) run against real sims and a
real gateway in one process on loopback, with one table row per fault.

    matrix.py     command line (`python -m ops.faults.matrix [--quick] [--json out.json]`)
    scenarios.py  the scenarios and the result each must give
    harness.py    the rig (sims p and b, a gateway with route chat: [m@p, m@b]) and the client
    report.py     rows as a Markdown table and JSON
"""
