"""RELION 5 tomography particle sets read as tilt images: geometry, stacks, export (issue 26, item 1)."""

import numpy as np
import pytest

from cryofield.cli.main import main
from cryofield.conventions import relion_euler_to_matrix
from cryofield.errors import InputError
from cryofield.io import read_particles, read_star, write_mrc

RELION5 = "tomo/relion5/"


def _star(path, blocks):
    """Write ``{name: dict of columns or of pairs}`` as a STAR file (lists are loops)."""
    lines = []
    for name, block in blocks.items():
        lines += ["", f"data_{name}", ""]
        if isinstance(next(iter(block.values())), list):
            lines += ["loop_"] + [f"_{c} #{i + 1}" for i, c in enumerate(block)]
            lines += [" ".join(str(v[r]) for v in block.values()) for r in range(len(next(iter(block.values()))))]
        else:
            lines += [f"_{k} {v}" for k, v in block.items()]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def _project(root, slices=2):
    """A RELION 5 project: one tilt series of 3 tilts (0, +30, -30 deg about y), 2 particles seen in tilts 0 and 2."""
    _star(root / "Tomo/tomograms.star", {"global": {
        "rlnTomoName": ["TS_1"], "rlnVoltage": [300.0], "rlnSphericalAberration": [2.7],
        "rlnAmplitudeContrast": [0.1], "rlnTomoHand": [-1.0], "rlnTomoTiltSeriesPixelSize": [2.0],
        "rlnTomoTiltSeriesStarFile": ["Tomo/TS_1.star"], "rlnTomoSizeX": [400], "rlnTomoSizeY": [400],
        "rlnTomoSizeZ": [200]}})
    _star(root / "Tomo/TS_1.star", {"TS_1": {
        "rlnTomoXTilt": [0.0, 0.0, 0.0], "rlnTomoYTilt": [0.0, 30.0, -30.0], "rlnTomoZRot": [0.0, 0.0, 0.0],
        "rlnDefocusU": [20000.0, 21000.0, 22000.0], "rlnDefocusV": [20500.0, 21500.0, 22500.0],
        "rlnDefocusAngle": [10.0, 20.0, 30.0], "rlnMicrographPreExposure": [0.0, 3.0, 6.0],
        "rlnTomoNominalStageTiltAngle": [0.0, 30.0, -30.0], "rlnCtfScalefactor": [1.0, 0.87, 0.86]}})
    _star(root / "Refine/particles.star", {
        "general": {"rlnTomoSubTomosAre2DStacks": 1},
        "optics": {"rlnOpticsGroup": [1], "rlnOpticsGroupName": ["optics1"], "rlnVoltage": [300.0],
                   "rlnSphericalAberration": [2.7], "rlnAmplitudeContrast": [0.1], "rlnImagePixelSize": [2.0],
                   "rlnImageSize": [8], "rlnCtfDataAreCtfPremultiplied": [1], "rlnTomoTiltSeriesPixelSize": [2.0]},
        "particles": {
            "rlnTomoName": ["TS_1", "TS_1"], "rlnTomoParticleName": ["TS_1/1", "TS_1/2"],
            "rlnTomoVisibleFrames": ["[1,0,1]", "[0,1,1]"], "rlnImageName": ["Stacks/1.mrcs", "Stacks/2.mrcs"],
            "rlnOpticsGroup": [1, 1], "rlnAngleRot": [0.0, 40.0], "rlnAngleTilt": [0.0, 50.0],
            "rlnAnglePsi": [0.0, 60.0], "rlnTomoSubtomogramRot": [0.0, 0.0], "rlnTomoSubtomogramTilt": [0.0, 0.0],
            "rlnTomoSubtomogramPsi": [0.0, 0.0], "rlnOriginXAngst": [10.0, 0.0], "rlnOriginYAngst": [0.0, 0.0],
            "rlnOriginZAngst": [0.0, 0.0], "rlnCenteredCoordinateXAngst": [0.0, 0.0],
            "rlnCenteredCoordinateYAngst": [0.0, 0.0], "rlnCenteredCoordinateZAngst": [100.0, 0.0]}})
    _star(root / "Refine/optimisation_set.star", {"": {"rlnTomoParticlesFile": "Refine/particles.star",
                                                        "rlnTomoTomogramsFile": "Tomo/tomograms.star"}})
    (root / "Stacks").mkdir()
    for i in (1, 2):  # image values name the tilt they show
        write_mrc(root / f"Stacks/{i}.mrcs", np.arange(slices, dtype=np.float32)[:, None, None] * np.ones((8, 8)), 2.0)
    return root / "Refine/optimisation_set.star"


def test_each_particle_becomes_its_visible_tilt_images(tmp_path):
    table = read_particles(_project(tmp_path))
    tilts = table.tilts
    assert table.n == 4 and tilts.names == ("TS_1/1", "TS_1/2") and tilts.particle.tolist() == [0, 0, 1, 1]
    np.testing.assert_allclose(tilts.exposure, [0, 6, 3, 6])
    np.testing.assert_allclose(tilts.tilt_deg, [0, -30, 30, -30])
    np.testing.assert_allclose(tilts.ctf_scale, [1.0, 0.86, 0.87, 0.86])
    assert tilts.ctf_premultiplied and table.box_size == 8 and (table.pixel_size_angstrom == 2.0).all()
    ry = relion_euler_to_matrix(np.zeros((1, 3)))[0]  # identity
    c, s = np.cos(np.radians(30)), np.sin(np.radians(30))
    tilt_plus, tilt_minus = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]), np.array([[c, 0, -s], [0, 1, 0], [s, 0, c]])
    particle_2 = relion_euler_to_matrix(np.array([[40.0, 50.0, 60.0]]))[0]
    np.testing.assert_allclose(table.rotations_or_none, [ry, tilt_minus, tilt_plus @ particle_2,
                                                         tilt_minus @ particle_2], atol=1e-12)
    # the 3D origin (10, 0, 0) A seen in each tilt; the depth of (0, 0, 100) A shifts the defocus (hand -1)
    np.testing.assert_allclose(table.shifts_angstrom, [[10, 0], [10 * c, 0], [0, 0], [0, 0]], atol=1e-9)
    depth = np.array([100.0, 100 * c - 10 * s, 0, 0])  # z of R_f (c - o)
    np.testing.assert_allclose(table.ctf["defocus_u_angstrom"], np.array([20000, 22000, 21000, 22000]) - depth)
    np.testing.assert_allclose(table.ctf["defocus_angle_deg"], [10, 30, 20, 30])
    # stacks of the visible tilts only (RELION's): image k is the k-th visible tilt
    assert table.refs.image_index.tolist() == [0, 1, 0, 1]
    np.testing.assert_allclose(table.images()[:, 0, 0], [0, 1, 0, 1])


def test_stacks_of_every_tilt_are_read_by_frame(tmp_path):
    table = read_particles(_project(tmp_path, slices=3))  # older WarpTools: a slice per tilt, zeros where hidden
    assert table.refs.image_index.tolist() == [0, 2, 1, 2]
    np.testing.assert_allclose(table.images()[:, 0, 0], [0, 2, 1, 2])


def test_a_particles_file_needs_its_tomograms(tmp_path):
    _project(tmp_path)
    with pytest.raises(InputError, match="optimisation set, or name its tomograms file"):
        read_particles(tmp_path / "Refine/particles.star")
    assert read_particles(tmp_path / "Refine/particles.star", tomograms=tmp_path / "Tomo/tomograms.star").n == 4
    text = (tmp_path / "Refine/particles.star").read_text().replace("[0,1,1]", "[0,1]")
    (tmp_path / "Refine/particles.star").write_text(text)
    with pytest.raises(InputError, match="row 2: _rlnTomoVisibleFrames lists 2 tilts, but tilt series TS_1 has 3"):
        read_particles(tmp_path / "Refine/optimisation_set.star")


def test_real_relion5_set_geometry_matches_its_visible_frames(data):
    """RELION chose the visible tilts by where each particle projects: the poses read here must agree.

    Every visible tilt image of the 9,053 particles (EMPIAR-10164 tutorial) must project inside
    the 3,710 x 3,838 px tilt images by half the 192 px box; reading the tilt rotations
    transposed puts 1,774 of them outside (the motion trajectories, absent, move a few).
    """
    table = read_particles(data / RELION5 / "Refine3D/job074/run_optimisation_set.star")
    tilts = table.tilts
    assert (table.n, tilts.n_particles) == (153033, 9053) and tilts.counts().max() == 17
    assert tilts.exposure.max() == 48 and tilts.ctf_premultiplied
    rows = read_star(data / RELION5 / "Refine3D/job074/run_data.star")["particles"].table

    def columns(*names):
        return np.stack([rows[n].to_numpy(float) for n in names], 1)

    a = relion_euler_to_matrix(columns("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"))
    sub = relion_euler_to_matrix(columns("rlnTomoSubtomogramRot", "rlnTomoSubtomogramTilt", "rlnTomoSubtomogramPsi"))
    p = tilts.particle
    tilt_frame = table.rotations_or_none @ np.transpose(sub @ a, (0, 2, 1))[p]  # R_f of each image
    position = (columns(*[f"rlnCenteredCoordinate{x}Angst" for x in "XYZ"])
                - np.einsum("nij,nj->ni", sub, columns(*[f"rlnOrigin{x}Angst" for x in "XYZ"]))) / 1.35
    xy = np.einsum("nij,nj->ni", tilt_frame, position[p])[:, :2]
    tomograms = read_star(data / RELION5 / "Polish/job070/tomograms.star")["global"].table
    frame = np.concatenate([np.flatnonzero([int(v) for v in f.strip("[]").split(",")])
                            for f in rows["rlnTomoVisibleFrames"]])
    names = rows["rlnTomoName"].to_numpy()[p]
    for name, star in zip(tomograms["rlnTomoName"], tomograms["rlnTomoTiltSeriesStarFile"]):
        series = read_star(data / RELION5 / star)[name].table
        at = names == name
        xy[at] += series[["rlnTomoXShiftAngst", "rlnTomoYShiftAngst"]].to_numpy(float)[frame[at]] / 1.35
    outside = (np.abs(xy[:, 0]) > 3710 / 2 - 96) | (np.abs(xy[:, 1]) > 3838 / 2 - 96)
    assert outside.sum() <= 5


def test_a_selection_is_written_one_row_per_particle(data, tmp_path, capsys):
    source = data / RELION5 / "Refine3D/job074/run_optimisation_set.star"
    (tmp_path / "keep.txt").write_text("2\n9052\n")
    out = tmp_path / "kept.star"
    assert main(["select", str(source), "--ind", str(tmp_path / "keep.txt"), "-o", str(out)]) == 0
    assert "wrote 2 of 9053 particles (34 tilt images)" in capsys.readouterr().out
    written, original = read_star(out), read_star(data / RELION5 / "Refine3D/job074/run_data.star")
    assert list(written) == list(original)  # general, optics, particles
    kept = written["particles"].table
    assert len(kept) == 2 and list(kept.columns) == list(original["particles"].table.columns)
    assert kept["rlnTomoParticleName"].tolist() == original["particles"].table["rlnTomoParticleName"].iloc[
        [2, 9052]].tolist()
    assert main(["select", str(source), "--ind", str(tmp_path / "keep.txt"), "-o", str(tmp_path / "k.mrcs")]) == 2
    assert "one row per particle" in capsys.readouterr().err
    assert main(["info", str(source)]) == 0
    assert "9053 particles in 153033 tilt images, 4-17 per particle" in capsys.readouterr().out
    capsys.readouterr()
    assert main(["phase-flip", str(source), "-o", str(tmp_path / "flipped.mrcs")]) == 2  # premultiplied already
    assert "multiplied by their CTF when extracted" in capsys.readouterr().err


def test_warptools_tomograms_give_the_tilt_rotations_as_rows(data, tmp_path):
    """WarpTools writes each tilt's rotation as _rlnTomoProjX/Y/Z rows and positions in tomogram pixels."""
    tomograms = data / "tomo/warptools_export/matching_tomograms.star"
    _star(tmp_path / "particles.star", {
        "optics": {"rlnOpticsGroup": [1], "rlnOpticsGroupName": ["opticsGroup1"], "rlnVoltage": [300.0],
                   "rlnSphericalAberration": [2.7], "rlnAmplitudeContrast": [0.07], "rlnImagePixelSize": [6.16],
                   "rlnImageSize": [32]},
        "particles": {"rlnTomoName": ["24jul16a_Position_27_1.tomostar"] * 2, "rlnOpticsGroup": [1, 1],
                      "rlnCoordinateX": [2048.0, 2048.0], "rlnCoordinateY": [2048.0, 2048.0],
                      "rlnCoordinateZ": [1000.0, 1100.0], "rlnAngleRot": [0.0, 0.0], "rlnAngleTilt": [0.0, 0.0],
                      "rlnAnglePsi": [0.0, 0.0], "rlnTomoVisibleFrames": ["[" + ",".join(["1"] * 31) + "]"] * 2,
                      "rlnImageName": ["a.mrcs", "b.mrcs"]}})
    table = read_particles(tmp_path / "particles.star", tomograms=tomograms)
    frames = read_star(tomograms)["24jul16a_Position_27_1.tomostar"].table
    assert table.n == 62 and table.tilts.counts().tolist() == [31, 31]
    c, s = np.cos(np.radians(83.94)), np.sin(np.radians(83.94))
    y = np.radians(-45.0)
    first = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0],
                                                                     [-np.sin(y), 0, np.cos(y)]])
    np.testing.assert_allclose(table.rotations_or_none[0], first, atol=1e-3)  # Rz(ZRot) Ry(YTilt): RELION's R_f
    np.testing.assert_allclose(table.tilts.exposure[:31], frames["rlnMicrographPreExposure"].to_numpy(float))
    # at the tomogram's centre the defocus is the tilt's; 100 px (154 A) higher it is nearer focus by the depth
    np.testing.assert_allclose(table.ctf["defocus_u_angstrom"][:31], frames["rlnDefocusU"].to_numpy(float))
    depth = 154.0 * table.rotations_or_none[31:, 2, 2]
    np.testing.assert_allclose(table.ctf["defocus_u_angstrom"][31:], frames["rlnDefocusU"].to_numpy(float) - depth,
                               rtol=1e-9)
