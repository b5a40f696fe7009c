import numpy as np
import pytest

from cryofield.analysis.selection import (
    cluster_mask,
    mask_to_rows,
    match_clusters,
    norm_outliers,
    polygon_mask,
    random_mask,
    range_mask,
)


def test_masks():
    assert cluster_mask([0, 1, 2, 1], [1, 2]).tolist() == [False, True, True, True]
    z = np.zeros((100, 2))
    z[:, 0] = np.random.default_rng(0).normal(0, 0.1, 100)
    z[7] = [10, 0]
    assert np.flatnonzero(norm_outliers(z, sigma=5)).tolist() == [7]
    assert norm_outliers(z, above=9.9).sum() == 1
    with pytest.raises(ValueError, match="one of"):
        norm_outliers(z)
    assert range_mask([0.0, 0.5, 1.0, 2.0], 0.5, 1.0).tolist() == [False, True, True, False]
    square = [[0, 0], [1, 0], [1, 1], [0, 1]]
    assert polygon_mask(np.array([[0.5, 0.5], [2, 2], [0.1, 0.9]]), square).tolist() == [True, False, True]
    with pytest.raises(ValueError, match="3"):
        polygon_mask(np.zeros((2, 2)), [[0, 0], [1, 1]])
    split = random_mask(1000, 0.9, seed=3)
    assert split.sum() == 900 and np.array_equal(split, random_mask(1000, 0.9, seed=3))
    assert mask_to_rows(np.array([True, False, True]), np.array([10, 20, 30])).tolist() == [10, 30]


def test_match_clusters_finds_the_permutation():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 4, 1000)
    b = np.array([2, 0, 3, 1])[a]  # the same clusters, renumbered
    b[:50] = (b[:50] + 1) % 4  # 5 % (at most) disagree
    mapping, agreement, confusion = match_clusters(a, b)
    assert mapping.tolist() == [2, 0, 3, 1] and 0.95 <= agreement < 1
    assert confusion.sum() == 1000 and np.trace(confusion) == round(agreement * 1000)
    with pytest.raises(ValueError, match="same particles"):
        match_clusters(a, b[:10])
