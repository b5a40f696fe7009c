import json
import shutil

import numpy as np
import pytest

from cryofield.cli.main import main
from cryofield.io import read_map, read_particles, write_map
from cryofield.simulate.toy import make_toy_dataset

SMALL = ["--enc-dim", "32", "--dec-dim", "32", "--enc-layers", "1", "--dec-layers", "1", "-b", "16"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A 2-epoch VAE on 100 of the toy's 120 particles (every particle but 20 of them, through --ind)."""
    folder = tmp_path_factory.mktemp("analyze")
    star = make_toy_dataset(folder / "toy", n=120, box=24, apix=5.0, snr=20, seed=1)["star"]
    ind = folder / "ind.txt"
    np.savetxt(ind, np.arange(20, 120), fmt="%d")
    out = folder / "vae"
    assert main(["train-vae", str(star), "--ind", str(ind), "-o", str(out), "--zdim", "2", "-n", "2"] + SMALL) == 0
    return star, out


def test_analyze_writes_clusters_maps_and_figures(run, tmp_path, capsys):
    star, out = run
    labels = tmp_path / "labels.txt"
    np.savetxt(labels, np.arange(100) % 3, fmt="%d")
    assert main(["analyze", str(out), "--ksample", "4", "--gmm", "2", "--pc-points", "3", "--labels", str(labels),
                 "--labels-name", "truth"]) == 0
    folder = out / "analysis"
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["kmeans4"]["counts"] and sum(summary["kmeans4"]["counts"]) == 100
    assert summary["maps"]["count"] == 4 + 2 + 2 * 3
    # cluster files hold rows of the input file (the run trained on rows 20..119), and cover them once
    rows = np.sort(np.concatenate([np.loadtxt(p, dtype=int, ndmin=1) for p in (folder / "kmeans4").glob("cluster_*")]))
    assert np.array_equal(rows, np.arange(20, 120))
    centre_rows = np.loadtxt(folder / "kmeans4/centers_ind.txt", dtype=int)
    z = np.load(out / "z.npy")
    np.testing.assert_allclose(np.loadtxt(folder / "kmeans4/centers.txt"), z[centre_rows - 20])
    volume, apix = read_map(folder / "kmeans4/vol_000.mrc")
    assert volume.shape == (24, 24, 24) and apix == pytest.approx(5.0)
    assert np.isfinite(volume).all() and volume.std() > 0
    assert len(list((folder / "pc2").glob("vol_*.mrc"))) == 3 and np.load(folder / "z_pca.npy").shape == (100, 2)
    assert np.load(folder / "z_umap.npy").shape == (100, 2)
    for name in ("pca_scatter.png", "pca_density.png", "z_norm.png", "pca_truth.png", "loss.png", "umap_scatter.png",
                 "umap_density.png", "umap_truth.png"):
        assert (folder / name).stat().st_size > 1000
    assert "analysed 100 latents" in capsys.readouterr().out
    # a cluster's particles export straight back
    assert main(["select", str(star), "--ind", str(folder / "kmeans4/cluster_000.ind.txt"),
                 "-o", str(tmp_path / "c0.star")]) == 0
    assert read_particles(tmp_path / "c0.star").n == summary["kmeans4"]["counts"][0]


def test_analyze_latents_alone_and_errors(run, tmp_path, capsys):
    star, out = run
    assert main(["analyze", "--z", str(out / "z.npy"), "-o", str(tmp_path / "a"), "--ksample", "3", "--pc", "1",
                 "--no-umap"]) == 0
    assert not list((tmp_path / "a").rglob("*.mrc")) and (tmp_path / "a/pca_scatter.png").is_file()
    assert not (tmp_path / "a/z_umap.npy").exists()
    z5 = np.random.default_rng(0).normal(size=(200, 5))  # more than two PCs: the figures use the first two
    np.save(tmp_path / "z5.npy", z5)
    assert main(["analyze", "--z", str(tmp_path / "z5.npy"), "-o", str(tmp_path / "b"), "--ksample", "3",
                 "--no-umap"]) == 0
    assert np.load(tmp_path / "b/z_pca.npy").shape == (200, 5) and (tmp_path / "b/pca_scatter.png").is_file()
    capsys.readouterr()
    assert main(["analyze", "--z", str(out / "z.npy")]) == 2
    assert "--z and -o" in capsys.readouterr().err
    np.savetxt(tmp_path / "short.txt", [1, 2])
    assert main(["analyze", str(out), "--labels", str(tmp_path / "short.txt"), "--no-maps"]) == 2
    assert "2 labels for 100 particles" in capsys.readouterr().err
    np.save(tmp_path / "z3.npy", np.zeros((100, 3)))
    assert main(["analyze", str(out), "--z", str(tmp_path / "z3.npy")]) == 2
    assert "latents of shape (100, 3): expected 2 columns" in capsys.readouterr().err


def test_traversal_commands(run, tmp_path, capsys):
    star, out = run
    z = np.load(out / "z.npy")
    assert main(["pc-traversal", str(out), "--pc", "2", "-n", "4", "-o", str(tmp_path / "pc")]) == 0
    assert np.loadtxt(tmp_path / "pc/z_path.txt").shape == (4, 2) and len(list((tmp_path / "pc").glob("*.mrc"))) == 4
    # anchors are input-file indices: the run trained on rows 20..119
    assert main(["graph-traversal", str(out), "--anchors", "20", "119", "--avg-neighbors", "10", "--no-maps",
                 "-o", str(tmp_path / "g")]) == 0
    visited = np.loadtxt(tmp_path / "g/path_ind.txt", dtype=int)
    assert visited[0] == 20 and visited[-1] == 119
    np.testing.assert_allclose(np.loadtxt(tmp_path / "g/z_path.txt"), z[visited - 20])
    assert main(["direct-traversal", str(out), "--anchors", "20", "119", "-n", "3", "--loop",
                 "-o", str(tmp_path / "d")]) == 0
    path = np.loadtxt(tmp_path / "d/z_path.txt")
    assert path.shape == (6, 2) and len(list((tmp_path / "d").glob("*.mrc"))) == 6
    np.testing.assert_allclose(path[[0, 3]], z[[0, 99]], atol=1e-6)
    capsys.readouterr()
    assert main(["graph-traversal", str(out), "--anchors", "5", "119", "-o", str(tmp_path / "x")]) == 2
    assert "particle 5 is not one the run was trained on" in capsys.readouterr().err
    assert main(["pc-traversal", str(out), "--pc", "3", "-o", str(tmp_path / "x")]) == 2
    assert not (tmp_path / "x").exists()


def test_filter_and_compare_runs(run, tmp_path, capsys):
    import json as json_

    star, out = run
    assert main(["analyze", str(out), "--ksample", "3", "--no-maps", "--pc", "1", "-o", str(tmp_path / "an")]) == 0
    labels = np.load(tmp_path / "an/kmeans3/labels.npy")
    keep = tmp_path / "keep.txt"
    assert main(["filter", str(out), "--analysis", str(tmp_path / "an"), "--clusters", "0", "2", "-o", str(keep)]) == 0
    assert np.array_equal(np.loadtxt(keep, dtype=int), np.flatnonzero(labels != 1) + 20)  # input-file rows
    rest = tmp_path / "rest.txt"
    assert main(["filter", str(out), "--analysis", str(tmp_path / "an"), "--clusters", "0", "2", "--invert",
                 "-o", str(rest)]) == 0
    assert np.array_equal(np.loadtxt(rest, dtype=int), np.flatnonzero(labels == 1) + 20)
    # a polygon in PCA coordinates covering everything, intersected with a 90 % random split
    pca = np.load(tmp_path / "an/z_pca.npy")
    lo, hi = pca[:, :2].min(0) - 1, pca[:, :2].max(0) + 1
    polygon = tmp_path / "all.json"
    polygon.write_text(json_.dumps({"space": "pca", "vertices": [[lo[0], lo[1]], [hi[0], lo[1]], [hi[0], hi[1]],
                                                                   [lo[0], hi[1]]]}))
    assert main(["filter", str(out), "--analysis", str(tmp_path / "an"), "--polygon", str(polygon), "--fraction",
                 "0.9", "-o", str(tmp_path / "p.txt")]) == 0
    assert len(np.loadtxt(tmp_path / "p.txt")) == 90
    assert main(["filter", str(out), "--ind", str(keep), str(rest), "--combine", "intersection",
                 "-o", str(tmp_path / "none.txt")]) == 0
    assert np.loadtxt(tmp_path / "none.txt").size == 0
    capsys.readouterr()
    assert main(["filter", str(out), "-o", str(tmp_path / "x.txt")]) == 2
    assert "at least one criterion" in capsys.readouterr().err and not (tmp_path / "x.txt").exists()
    # a run compared with itself agrees completely
    assert main(["compare-runs", str(out), str(out), "--k", "3", "--json", "--plot", str(tmp_path / "c.png")]) == 0
    report = json_.loads(capsys.readouterr().out)
    assert report["agreement"] == 1.0 and report["mapping"] == [0, 1, 2] and (tmp_path / "c.png").is_file()


def test_maps_at_the_mean_latent_of_particle_sets(run, tmp_path, capsys):
    star, out = run
    z = np.load(out / "z.npy")
    np.savetxt(tmp_path / "a.txt", [20, 21, 22], fmt="%d")
    np.savetxt(tmp_path / "b.txt", [119], fmt="%d")
    assert main(["eval-vol", str(out), "--mean-of", str(tmp_path / "a.txt"), str(tmp_path / "b.txt"),
                 "-o", str(tmp_path / "m")]) == 0
    assert main(["eval-vol", str(out), "--z", *map(str, z[:3].mean(0)), "-o", str(tmp_path / "direct")]) == 0
    np.testing.assert_allclose(read_map(tmp_path / "m/vol_000.mrc")[0], read_map(tmp_path / "direct/vol_000.mrc")[0],
                               atol=1e-4)
    assert (tmp_path / "m/vol_001.mrc").is_file()
    np.savetxt(tmp_path / "c.txt", [3], fmt="%d")
    capsys.readouterr()
    assert main(["eval-vol", str(out), "--mean-of", str(tmp_path / "c.txt"), "-o", str(tmp_path / "x")]) == 2
    assert "particle 3 is not one the run was trained on" in capsys.readouterr().err


def test_landscape_command_and_its_report(run, tmp_path, capsys):
    star, out = run
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    land = copy / "landscape"
    assert main(["landscape", str(copy), "--sketch", "12", "-M", "3", "--pcs", "3", "--pc-points", "3",
                 "--phi-samples", "24", "--phi-epochs", "3"]) == 0
    assert "landscape of 100 particles" in capsys.readouterr().out
    rows = np.sort(np.concatenate([np.loadtxt(p, dtype=int, ndmin=1) for p in (land / "states3").glob("*.ind.txt")]))
    assert np.array_equal(rows, np.arange(20, 120))  # input-file rows of the run's particles
    volume, apix = read_map(land / "pc1/vol_002.mrc")
    assert volume.shape == (24, 24, 24) and apix == pytest.approx(5.0)
    assert np.load(land / "z_vol_pc.npy").shape == (100, 3)
    for name in ("landscape.png", "sketch_pc.png", "states.png", "sketch_check.png", "vol_pca_variance.png"):
        assert (land / name).is_file(), name
    assert main(["report", str(copy), "-o", str(tmp_path / "report.html")]) == 0
    page = (tmp_path / "report.html").read_text()
    assert '<h2 id="landscape">' in page and "landscape states: centroid maps" in page
    assert page.count('alt="landscape.png"') == 1 and "maps along volume PC1" in page
    # errors: more states than sketched maps; a mask of another box
    assert main(["landscape", str(out), "-o", str(tmp_path / "x"), "--sketch", "4", "-M", "5"]) == 2
    mask = tmp_path / "mask.mrc"
    write_map(mask, np.ones((16, 16, 16), np.float32), 5.0)
    assert main(["landscape", str(out), "-o", str(tmp_path / "y"), "--mask", str(mask)]) == 2
    assert "mask for maps of 24^3" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_latent_analysis_is_a_typed_result_that_reads_back(tmp_path):
    from cryofield.analysis import analyze_latents
    from cryofield.io import LatentAnalysis

    z = np.random.default_rng(3).normal(size=(60, 3))
    rows = np.arange(60) * 2 + 7  # the run's --ind: input-file rows of the latents
    result = analyze_latents(z, tmp_path / "an", particle_indices=rows, ksample=4, gmm=2, pc_points=3, umap=False)
    loaded = LatentAnalysis.load(tmp_path / "an")
    assert list(loaded.clusters) == ["kmeans4", "gmm2"] and loaded.kmeans.name == "kmeans4"
    for name, clusters in result.clusters.items():
        np.testing.assert_array_equal(loaded.clusters[name].labels, clusters.labels)
        np.testing.assert_array_equal(loaded.clusters[name].centers_row, clusters.centers_row)
        # index files hold input-file rows of each cluster's particles
        members = np.loadtxt(tmp_path / "an" / name / "cluster_000.ind.txt", dtype=int, ndmin=1)
        np.testing.assert_array_equal(members, rows[clusters.labels == 0])
    np.testing.assert_allclose(loaded.z_pca, result.z_pca)
    np.testing.assert_allclose(loaded.components, result.components)
    assert loaded.coordinates("umap") is None and loaded.coordinates("pca").shape == (60, 2)
    assert sorted(loaded.paths) == ["pc1", "pc2"] and loaded.paths["pc1"].shape == (3, 3)
    targets = loaded.map_targets(tmp_path / "an", z)
    assert [len(paths) for _, paths in targets] == [4, 2, 3, 3]
