"""Landscape analysis on a synthetic ensemble whose maps are known functions of z."""

import json

import numpy as np
import pytest
from scipy.stats import spearmanr

from cryofield.analysis.landscape import (
    LandscapeSettings,
    default_phi_samples,
    landscape_analysis,
    threshold_mask,
    train_phi,
)
from cryofield.io import Landscape, read_map
from cryofield.metrics import adjusted_rand_index

BOX = 16


def blob_maps(latents: np.ndarray) -> np.ndarray:
    """A Gaussian blob whose x position follows z[:, 0] and whose height follows z[:, 1]."""
    grid = np.arange(BOX) - BOX // 2
    zz, yy, xx = np.meshgrid(grid, grid, grid, indexing="ij")
    out = []
    for z in np.asarray(latents, float):
        centre = np.clip(z[0], -4, 4)
        out.append((1 + 0.1 * z[1]) * np.exp(-((xx - centre) ** 2 + yy**2 + zz**2) / 4.0))
    return np.asarray(out, np.float32)


def test_threshold_mask_is_the_union_of_half_maximum_regions():
    maps = np.zeros((2, 8, 8, 8), np.float32)
    maps[0, 2, 2, 2], maps[0, 3, 3, 3] = 10, 4  # the second voxel is below half of map 0's maximum
    maps[1, 5, 5, 5] = 1
    mask = threshold_mask(maps, 0.5)
    assert mask.sum() == 2 and mask[2, 2, 2] and mask[5, 5, 5] and not mask[3, 3, 3]
    assert threshold_mask(maps, 0.5, dilate=1).sum() == 2 * 7


def test_sketch_maps_on_disk_give_what_the_maps_in_memory_give(tmp_path):
    """The sketch is rendered in batches to a scratch file; each step reads back what it needs."""
    from scipy.spatial.distance import pdist

    from cryofield.analysis.landscape import _Renderer, _SketchMaps, pairwise_distances

    latents = np.random.default_rng(0).normal(size=(21, 2)) * 3
    calls = []

    def counted(batch):
        calls.append(len(batch))
        return blob_maps(batch)

    maps = _SketchMaps(tmp_path, _Renderer(counted, None).batches(latents, "sketch"), 0.5)
    full = blob_maps(latents)
    assert calls == [8, 8, 5] and len(maps) == 21 and maps.shape == (BOX,) * 3
    np.testing.assert_array_equal(maps[7], full[7])
    np.testing.assert_allclose(maps.mean, full.mean(0), rtol=1e-6)
    np.testing.assert_array_equal(maps.union, threshold_mask(full, 0.5))
    mask = maps.union
    np.testing.assert_array_equal(maps.masked(mask), full[:, mask].astype(np.float64))
    rows = np.array([3, 0, 12, 20])
    np.testing.assert_allclose(maps.distances(rows, block=1000), pairwise_distances(full.reshape(21, -1)[rows]),
                               rtol=1e-6)
    assert len(maps.distances(rows)) == len(pdist(full[rows].reshape(4, -1)))
    np.testing.assert_allclose(maps.state_mean(np.array([1, 4, 5])), full[[1, 4, 5]].mean(0), rtol=1e-6)


def test_phi_learns_a_smooth_map_and_reports_validation_r2():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(400, 3))
    targets = np.column_stack([2 * z[:, 0] + z[:, 1], np.sin(z[:, 2])])
    phi, record = train_phi(z, targets, epochs=40, batch=32, seed=0)
    assert record["train"] == 300 and record["validation"] == 100
    assert min(record["val_r2"]) > 0.9
    test = rng.normal(size=(50, 3))
    predicted = phi(test)
    assert predicted.shape == (50, 2)
    assert np.corrcoef(predicted[:, 0], 2 * test[:, 0] + test[:, 1])[0, 1] > 0.95


def test_phi_samples_by_default_keep_the_rendering_time_of_2000_maps_at_64_px(tmp_path):
    assert [default_phi_samples(box) for box in (16, 64, 80, 96, 128, 256)] == [2000, 2000, 1024, 593, 500, 500]
    z = np.random.default_rng(0).normal(size=(60, 2))
    rendered = []

    def counted(latents):
        rendered.append(len(latents))
        return blob_maps(latents)

    result = landscape_analysis(z, counted, tmp_path, apix=1.0, settings=LandscapeSettings(
        sketch=10, states=2, n_pcs=2, phi_epochs=2, check_particles=3))
    assert result.summary["phi"]["samples"] == 60  # all of them: fewer than 2,000 at 16 px
    assert result.summary["settings"]["phi_samples"] is None
    assert sum(rendered) >= 10 + 60


def test_three_discrete_states_and_a_continuous_coordinate(tmp_path):
    rng = np.random.default_rng(1)
    states = rng.integers(0, 3, 600)
    position = np.array([-4.0, 0.0, 4.0])[states]
    z = np.column_stack([position + 0.05 * rng.normal(size=600), rng.normal(size=600)])
    settings = LandscapeSettings(sketch=40, states=3, n_pcs=3, pc_points=4, phi_samples=120, phi_epochs=30,
                                 check_particles=5, seed=0)
    rows = np.arange(600) + 1000
    result = landscape_analysis(z, blob_maps, tmp_path / "land", apix=2.0, particle_indices=rows,
                                settings=settings)
    summary = result.summary
    labels = np.load(tmp_path / "land/states3/labels.npy")
    assert adjusted_rand_index(labels, states) > 0.99
    # state files hold input-file rows and cover every particle once
    files = sorted((tmp_path / "land/states3").glob("state_*.ind.txt"))
    assert np.array_equal(np.sort(np.concatenate([np.loadtxt(f, dtype=int, ndmin=1) for f in files])), rows)
    counts = json.loads((tmp_path / "land/states3/counts.json").read_text())
    assert sum(counts["particles"]) == 600 and counts["particles"] == sorted(counts["particles"], reverse=True)
    centroid, apix = read_map(tmp_path / "land/states3/state_000.mrc")
    assert centroid.shape == (BOX,) * 3 and apix == pytest.approx(2.0)
    # volume PC1 orders the blob's position for every particle, through phi
    z_vol = np.load(tmp_path / "land/z_vol_pc.npy")
    assert z_vol.shape == (600, 3)
    assert abs(spearmanr(z_vol[:, 0], position)[0]) > 0.9
    assert summary["sketch_check"]["within_cluster_medians"]
    assert max(summary["sketch_check"]["within_cluster_medians"]) < summary["sketch_check"]["between_sketch_median"]
    for name in ("mask.mrc", "mean.mrc", "pc1/vol_003.mrc", "sketch_mds.npy", "sketch_umap.npy", "phi.pt"):
        assert (tmp_path / "land" / name).is_file(), name
    # the typed result reads back what was saved
    loaded = Landscape.load(tmp_path / "land")
    assert loaded.states.particles == counts["particles"] == result.states.particles
    np.testing.assert_array_equal(loaded.states.of_particle, labels)
    np.testing.assert_array_equal(loaded.sketch_counts, result.sketch_counts)
    np.testing.assert_allclose(loaded.z_vol_pc, z_vol)
    assert [p.name for p in loaded.state_maps(tmp_path / "land")] == ["state_000.mrc", "state_001.mrc",
                                                                       "state_002.mrc"]


def test_user_mask_must_match_the_maps(tmp_path):
    z = np.random.default_rng(0).normal(size=(50, 2))
    with pytest.raises(ValueError, match="mask of shape"):
        landscape_analysis(z, blob_maps, tmp_path, apix=1.0, mask=np.ones((8, 8, 8), bool),
                           settings=LandscapeSettings(sketch=10, states=2, phi_samples=0))
