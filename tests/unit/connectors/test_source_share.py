"""Partition shares (connectors/source.py): every partition read by exactly one loop, the same one every time."""

from __future__ import annotations

import pytest

from connectors.source import partitions_of_share


@pytest.mark.parametrize(("partitions", "loops"), [(6, 3), (6, 4), (4, 1), (7, 7), (12, 5)])
def test_shares_cover_every_partition_once(partitions, loops):
    shares = [partitions_of_share(list(range(partitions)), index, loops) for index in range(loops)]
    assert sorted(p for share in shares for p in share) == list(range(partitions))
    assert max(map(len, shares)) - min(map(len, shares)) <= 1  # balanced


def test_a_share_beyond_the_partitions_is_empty():
    assert partitions_of_share([0, 1], 2, 3) == []
