"""The explorer's model of a run (issue 27): views, selections and their export, thumbnails, maps, paths."""

import json
import time

import numpy as np
import pytest

from cryofield.analysis.selection import polygon_mask
from cryofield.cli.main import main
from cryofield.explore import Explorer
from cryofield.io import read_map, read_particles


@pytest.fixture
def explorer(toy_run):
    e = Explorer(toy_run)
    yield e
    e.close()


def test_views_of_an_analysed_run(explorer, toy_run):
    z = np.load(toy_run / "z.npy")
    assert explorer.n == 300 and explorer.zdim == 2
    assert explorer.default_axes() == ("pc1", "pc2")
    axes = explorer.axes()
    assert {"pc1", "pc2", "z1", "z2", "volpc1", "volpc2", "|z|", "particle", "defocus"} <= set(axes)
    assert "umap1" not in axes
    np.testing.assert_allclose(explorer.axis("z2"), z[:, 1], rtol=1e-6)
    names = [c["name"] for c in explorer.colourings()]
    assert names[:3] == ["cluster:kmeans3", "landscape state", "|z|"]
    assert "optics group" in names and "rlnDefocusV" in names
    states, kind = explorer.colouring("landscape state")
    assert kind == "category" and set(states) == {0, 1, 2}
    labels, kind = explorer.colouring("cluster:kmeans3")
    assert kind == "category" and set(labels) == {0, 1, 2}
    defocus, _ = explorer.colouring("defocus")
    table = read_particles(toy_run.parent / "data/particles.star")
    np.testing.assert_allclose(defocus, (table.ctf["defocus_u_angstrom"] + table.ctf["defocus_v_angstrom"]) / 2)
    assert "loss" in explorer.notes and "eval-images" in explorer.notes["loss"]
    with pytest.raises(KeyError, match="no axis"):
        explorer.axis("pc7")
    with pytest.raises(KeyError, match="no colouring"):
        explorer.colouring("nonsense")


def test_a_run_without_analysis_still_opens(toy_run, tmp_path):
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("config.json", "z.npy", "log.jsonl"):
        (bare / name).write_bytes((toy_run / name).read_bytes())
    (bare / "checkpoints").symlink_to(toy_run / "checkpoints")
    e = Explorer(bare)
    try:
        assert e.axes()[:2] == ["pc1", "pc2"]  # PCA computed here
        assert "cryofield analyze" in e.notes["analysis"]
        assert [c["name"] for c in e.colourings()][0] == "|z|"
    finally:
        e.close()


def test_selections_combine_and_export_as_select_writes_them(explorer, toy_run, star_of, tmp_path):
    pc = np.column_stack([explorer.axis("pc1"), explorer.axis("pc2")])
    polygon = [[-10, -10], [0.0, -10], [0.0, 10], [-10, 10]]
    left = explorer.select_polygon("pc1", "pc2", polygon)
    np.testing.assert_array_equal(left, np.flatnonzero(polygon_mask(pc, np.array(polygon))))
    low = explorer.select_box("z1", "z2", [-100, np.median(explorer.axis("z1"))], [-100, 100])
    a, b = explorer.store_selection(left), explorer.store_selection(low)
    assert (a, b) == ("sel1", "sel2") and explorer.selections() == {"sel1": len(left), "sel2": len(low)}
    both = explorer.combine("sel1", "sel2", "intersection")
    np.testing.assert_array_equal(both, np.intersect1d(left, low))
    np.testing.assert_array_equal(explorer.combine("sel1", "sel2", "difference"), np.setdiff1d(left, low))
    name = explorer.store_selection(both, "core")
    for fmt in ("txt", "star", "cs"):
        files = explorer.export(name, "core", fmt)
        assert all(f.parent == toy_run / "explore" for f in files)
    np.testing.assert_array_equal(np.loadtxt(toy_run / "explore/core.txt", dtype=int, ndmin=1), both)
    # the .star is what `cryofield select` writes for the same indices
    assert main(["select", str(star_of), "--ind", str(toy_run / "explore/core.txt"), "-o",
                 str(tmp_path / "ref.star")]) == 0
    assert (toy_run / "explore/core.star").read_text() == (tmp_path / "ref.star").read_text()
    assert {"core.txt", "core.star", "core.cs", "core.csg"} <= set(explorer.exports())
    with pytest.raises(ValueError, match="exists"):
        explorer.export(name, "core", "star")
    for bad in ("../escape", "/abs", ".hidden", "a/b"):
        with pytest.raises(ValueError, match="not a usable name"):
            explorer.export(name, bad, "txt")
    assert not (toy_run / "escape.txt").exists()


def test_maps_render_one_at_a_time_and_match_the_run(explorer, toy_run):
    from cryofield.train import Run

    jobs = [explorer.map_at_particle(row) for row in (3, 40, 41)]
    mean_job = explorer.map_at_selection(explorer.store_selection(np.arange(10)))
    states = {j.state for j in jobs[1:]}
    assert states & {"queued", "running", "done"}
    volume = explorer.volume(jobs[0].id)
    z = np.load(toy_run / "z.npy")
    np.testing.assert_allclose(volume, Run(toy_run).volume(z[3]), atol=1e-5)
    written, apix = read_map(explorer.map_path(jobs[0].id))
    np.testing.assert_allclose(written, volume, atol=1e-6)
    assert apix == pytest.approx(4.0)
    np.testing.assert_allclose(explorer.volume(mean_job.id), Run(toy_run).volume(z[:10].mean(0)), atol=1e-5)
    assert [j.state for j in jobs] == ["done"] * 3 and explorer.queue_position(jobs[2]) == 0
    with pytest.raises(ValueError, match="not in"):
        explorer.map_at_particle(300)
    with pytest.raises(ValueError, match="latent of 2"):
        explorer.request_map(np.zeros(3), "bad")


def test_paths_follow_the_data_and_write_chimerax_scripts(explorer, toy_run, monkeypatch):
    import cryofield.explore.session as session

    labels, _ = explorer.colouring("cluster:kmeans3")
    same = np.flatnonzero(labels == labels[0])
    rows, zs, how = explorer.path_latents(int(same[0]), int(same[-1]), frames=5)
    assert rows[0] == same[0] and rows[-1] == same[-1] and len(rows) == 5 and how.startswith("along the data")
    np.testing.assert_allclose(zs, explorer.z[rows])
    # graphs that join nothing (two particles each): a straight line between the two latents
    monkeypatch.setattr(session, "PATH_GRAPHS", ((1, 1),))
    far = int(np.argmax(np.linalg.norm(explorer.z - explorer.z[0], axis=1)))
    rows, line, how = explorer.path_latents(0, far, frames=4)
    assert how.startswith("a straight line") and rows[0] == 0 and rows[-1] == far
    np.testing.assert_allclose(line, explorer.z[0] + np.linspace(0, 1, 4)[:, None] * (explorer.z[far] - explorer.z[0]),
                               atol=1e-5)
    monkeypatch.undo()
    jobs = [explorer.request_map(z, f"frame {i}") for i, z in enumerate(zs)]
    script = explorer.chimerax_script([j.id for j in jobs], "path")
    text = script.read_text()
    assert script == toy_run / "explore/path.cxc"
    assert f"open maps/map_{jobs[0].id:04d}.mrc" in text and "vseries true" in text and "level" in text
    assert all(explorer.map_path(j.id).is_file() for j in jobs)


def test_thumbnails_and_a_missing_stack(explorer, toy_run, tmp_path):
    items = explorer.thumbnails(np.array([5, 7]))
    assert [i["row"] for i in items] == [5, 7] and items[0]["png"].startswith("data:image/png;base64,")
    assert list(items[0]["meta"]) == ["cluster:kmeans3", "landscape state", "defocus"]
    config = json.loads((toy_run / "config.json").read_text())
    moved = tmp_path / "moved"
    moved.mkdir()
    for name in ("z.npy", "log.jsonl"):
        (moved / name).write_bytes((toy_run / name).read_bytes())
    (moved / "checkpoints").symlink_to(toy_run / "checkpoints")
    config["particles"] = str(tmp_path / "gone.star")
    (moved / "config.json").write_text(json.dumps(config))
    e = Explorer(moved)
    try:
        assert e.axes()[:2] == ["pc1", "pc2"] and "particles" in e.notes  # opens; says why
        with pytest.raises(Exception, match="gone.star"):
            e.thumbnails(np.array([0]))
        assert e.volume(e.map_at_particle(0).id).shape == (24, 24, 24)
    finally:
        e.close()


def test_maps_stay_fast_enough_to_click(explorer):
    start = time.perf_counter()
    explorer.volume(explorer.map_at_particle(1).id)
    assert time.perf_counter() - start < 10


def test_saved_maps_open_in_the_viewer(explorer, toy_run, monkeypatch):
    from cryofield.io import read_map

    groups = explorer.saved_maps()
    monkeypatch.chdir(toy_run.parent)  # a run given by a relative path lists the same
    relative = Explorer("run")
    assert relative.saved_maps() == groups
    relative.close()
    assert list(groups) == ["kmeans3 centres", "pc1 path", "landscape states", "volume PC1", "volume PC2"]
    assert groups["kmeans3 centres"] == [f"analysis/kmeans3/vol_{i:03d}.mrc" for i in range(3)]
    assert len(groups["landscape states"]) == 3 and len(groups["volume PC1"]) == 3
    job = explorer.open_map(groups["landscape states"][1])
    np.testing.assert_array_equal(explorer.volume(job.id), read_map(toy_run / groups["landscape states"][1])[0])
    assert explorer.map_path(job.id) == toy_run / groups["landscape states"][1]
    script = explorer.chimerax_script([job.id], "state1").read_text()
    assert "open ../landscape/states3/state_001.mrc" in script
    with pytest.raises(KeyError, match="not one of the run's saved maps"):
        explorer.open_map("config.json")


def test_two_runs_compared_as_compare_runs_does(toy_run, toy_run_b, capsys):
    from cryofield.explore.session import compare

    a, b = Explorer(toy_run), Explorer(toy_run_b)
    try:
        result = compare(a, b, k=4)
        with pytest.raises(ValueError, match="k must lie"):
            compare(a, b, k=1)
    finally:
        a.close()
        b.close()
    assert main(["compare-runs", str(toy_run), str(toy_run_b), "--k", "4", "--json", "--seed", "0"]) == 0
    reference = json.loads(capsys.readouterr().out)
    assert result["agreement"] == pytest.approx(reference["agreement"]) and 0.25 < result["agreement"] <= 1
    assert result["mapping"] == reference["mapping"] and result["confusion"] == reference["confusion"]


def test_a_homogeneous_run_shows_its_one_map(toy_run, tmp_path):
    from cryofield.explore.server import _describe
    from cryofield.train import Run

    run = tmp_path / "nn"
    assert main(["train-nn", str(toy_run.parent / "data/particles.star"), "-o", str(run), "-n", "1", "--dec-dim",
                 "16", "--dec-layers", "1"]) == 0
    e = Explorer(run)
    try:
        described = _describe(0, e)
        assert described["axes"] == [] and described["particles"] == 0
        assert "homogeneous" in described["notes"]["latent"]
        np.testing.assert_allclose(e.volume(e.request_map(None, "the run's map").id), Run(run).volume(), atol=1e-6)
    finally:
        e.close()


def test_a_tilt_series_run_counts_particles_and_exports_whole_series(tmp_path, capsys):
    from cryofield.examples import ADK_CLOSED, example_path

    data = tmp_path / "et"
    assert main(["simulate", "--pdb", str(example_path(ADK_CLOSED)), "--states", "1", "--box", "16", "--apix", "4",
                 "-n", "30", "--tilt-series", "--tilt-range", "-20", "20", "--tilt-step", "10", "-o", str(data)]) == 0
    run = tmp_path / "run"
    assert main(["train-vae", str(data / "particles.star"), "--tilt-series", "-o", str(run), "--zdim", "2", "-n", "1",
                 "--enc-dim", "16", "--dec-dim", "16", "--enc-layers", "1", "--dec-layers", "1", "--ntilts", "3",
                 "--tilt-emb-dim", "8"]) == 0
    # analyze's clusters and the report count particles (30), not tilt images (150)
    assert main(["analyze", str(run), "--ksample", "3", "--no-umap", "--no-maps", "--pc", "1"]) == 0
    clusters = [np.loadtxt(f, dtype=int, ndmin=1) for f in sorted((run / "analysis/kmeans3").glob("cluster_*.ind.txt"))]
    assert sorted(np.concatenate(clusters).tolist()) == list(range(30))
    assert main(["report", str(run)]) == 0
    assert "30 of 30 particles" in capsys.readouterr().out
    e = Explorer(run)
    try:
        assert e.n == 30 and len(e.colouring("defocus")[0]) == 30
        name = e.store_selection(np.arange(0, 30, 3))
        e.export(name, "every_third", "star")
        kept = read_particles(run / "explore/every_third.star", tilt_series=True)
        assert kept.tilts.n_particles == 10 and kept.n == 10 * 5  # every tilt image of each particle
        images = read_particles(data / "particles.star", tilt_series=True)
        least = images.tilts.members(1)[:, 0]  # each particle's least exposed tilt
        shown = e.thumbnails(np.array([4]))[0]
        assert shown["input_row"] == 4 and e._first_rows[4] == least[4]
    finally:
        e.close()


def test_a_cryosparc_run_offers_its_cs_fields(toy_run, star_of, tmp_path):
    cs = tmp_path / "particles.cs"
    (tmp_path / "none.txt").write_text("")  # exclude nothing: every particle, as cryoSPARC would hold them
    assert main(["select", str(star_of), "--exclude", str(tmp_path / "none.txt"), "-o", str(cs)]) == 0
    run = tmp_path / "run"
    assert main(["train-vae", str(cs), "-o", str(run), "--zdim", "2", "-n", "1", "--enc-dim", "16", "--dec-dim", "16",
                 "--enc-layers", "1", "--dec-layers", "1", "--datadir", str(star_of.parent)]) == 0
    e = Explorer(run)
    try:
        names = [c["name"] for c in e.colourings()]
        assert "ctf/df1_A" in names and "defocus" in names
        df1, kind = e.colouring("ctf/df1_A")
        table = read_particles(star_of)
        np.testing.assert_allclose(df1, table.ctf["defocus_u_angstrom"], rtol=1e-5)
        name = e.store_selection(np.arange(10))
        e.export(name, "ten", "cs")
        assert read_particles(run / "explore/ten.cs", datadir=star_of.parent).n == 10
    finally:
        e.close()


def test_commands_continue_from_a_selection_a_map_and_a_path(explorer, toy_run, star_of, tmp_path, monkeypatch):
    import shlex

    name = explorer.store_selection(np.arange(5, 25), "cmd")
    before = explorer.commands(name)
    assert [c["ready"] for c in before] == [False] * 4  # the .txt is not written yet
    explorer.export(name, "cmd", "txt")
    job = explorer.map_at_particle(7)
    lines = explorer.commands(name, job.id, (3, 9))
    assert all(c["ready"] for c in lines) and len(lines) == 6
    monkeypatch.chdir(tmp_path)
    for line in lines[:1] + lines[3:5]:  # select, eval-vol --mean-of, eval-vol --z: run them as printed
        words = shlex.split(line["command"])
        assert words[0] == "cryofield" and main(words[1:]) == 0, line
    kept = read_particles(tmp_path / "cmd.star")
    assert kept.n == 20
    mean_map, _ = read_map(next((tmp_path / "cmd_mean").glob("*.mrc")))
    np.testing.assert_allclose(mean_map, explorer.volume(explorer.map_at_selection(name).id), atol=2e-3)
    again, _ = read_map(next((tmp_path / f"map_{job.id:04d}").glob("*.mrc")))
    np.testing.assert_allclose(again, explorer.volume(job.id), atol=2e-3)
    assert lines[5]["command"].endswith("--anchors 3 9 -o path/")
