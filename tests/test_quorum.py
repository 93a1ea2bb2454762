import pytest

from consensus.quorum import committed_index, has_quorum, majority


@pytest.mark.parametrize(("n", "need"), [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3), (6, 4), (7, 4)])
def test_majority(n, need):
    assert majority(n) == need
    assert has_quorum(need, n)
    assert not has_quorum(need - 1, n)


def test_majority_rejects_empty_cluster():
    with pytest.raises(ValueError):
        majority(0)


@pytest.mark.parametrize(
    ("acked", "n", "index"),
    [
        ([5, 5, 5], 3, 5),
        ([9, 4, 1], 3, 4),  # two of three hold 4
        ([9, 0, 0], 3, 0),
        ([10, 8, 7, 3, 2], 5, 7),  # three of five hold 7
        ([10, 8], 5, 0),  # missing voters count as nothing
        ([3, 3, 3, 3], 4, 3),
        ([4, 3, 2, 1], 4, 2),  # three of four hold 2
    ],
)
def test_committed_index(acked, n, index):
    assert committed_index(acked, n) == index
