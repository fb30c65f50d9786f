"""The Redis processes the tests and benches start (`ops/bench/redisproc.py`): a cluster that
cannot be made must not leave nodes running behind it (they did, when a node failed to start:
the ones before it stayed up, holding ports, until the machine was cleaned)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ops.bench.redisproc import ClusterProcess


def test_a_cluster_that_cannot_be_made_leaves_no_node_running(tmp_path: Path) -> None:
    cluster = ClusterProcess(tmp_path / "cluster", masters=2)
    first = cluster.nodes[0]
    cluster.nodes[1].port = 60000  # its cluster-bus port would be 70000: the node refuses
    with pytest.raises(RuntimeError, match="exited"):
        cluster.start()
    assert all(node.proc is None for node in cluster.nodes)
    assert not first.ping()
