"""Turnout's operations material: the benchmarks (ops.bench), the fuzzer (ops.fuzz), the fault
matrix (ops.faults), the developer tasks (ops/dev.py) and the deployment files. Not part of the
shipped wheel: run the Python parts from the repository root, e.g.
`python -m ops.bench.run --quick`."""
