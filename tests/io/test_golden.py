"""The importers reproduce every file in ../shared/data/golden/."""

import numpy as np
import pytest

from cryofield.io import read_particles

CASES = {
    "relion31": "relion/relion31.star",
    "relion31_6opticsgroups": "relion/relion31_6opticsgroups.star",
    "relion5": "relion/relion5.star",
    "relion30_PfCRT": "relion/relion30_PfCRT.star",
    "cryosparc_P12_J24_001": "cryosparc/cryosparc_P12_J24_001_particles.cs",
    "empiar_10076_7_star": "empiar10076/empiar_10076_7.star",
    "empiar_10076_7_cs": "empiar10076/empiar_10076_7.cs",
}


@pytest.mark.filterwarnings("ignore:.*_rlnAmplitudeContrast")
@pytest.mark.parametrize("name", sorted(CASES))
def test_golden(data, name):
    golden = np.load(data / "golden" / f"{name}.npz")
    table = read_particles(data / CASES[name])
    assert table.n == len(golden[golden.files[0]])
    if "rot" in golden:
        np.testing.assert_allclose(table.rotations, golden["rot"], atol=1e-5)
    if "shift_px" in golden:
        np.testing.assert_allclose(table.shifts_px, golden["shift_px"], atol=1e-3)
    if "trans_fraction_of_box" in golden:
        box = 256 if name == "relion30_PfCRT" else table.box_size  # the golden README's assumption
        np.testing.assert_allclose(table.shifts_px / box, golden["trans_fraction_of_box"], atol=1e-3 / box)
    if "ctf" in golden:
        np.testing.assert_allclose(table.ctf_array(), golden["ctf"], rtol=1e-4, atol=0)


def test_relion30_pixel_size_from_detector_and_magnification(data):
    table = read_particles(data / "relion/relion30_PfCRT.star")
    # _rlnDetectorPixelSize 1.035 um at _rlnMagnification 10000
    np.testing.assert_allclose(table.pixel_size_angstrom, 1.035)
    golden = np.load(data / "golden/relion30_PfCRT.npz")
    np.testing.assert_allclose(table.shifts_angstrom / 1.035, golden["trans_fraction_of_box"] * 256, atol=1e-3)


def test_star_and_cs_of_the_same_particles_agree(data):
    star = read_particles(data / "empiar10076/empiar_10076_7.star")
    cs = read_particles(data / "empiar10076/empiar_10076_7.cs")
    np.testing.assert_allclose(star.ctf_array(), cs.ctf_array(), rtol=1e-5)
    np.testing.assert_array_equal(star.images(), cs.images())
