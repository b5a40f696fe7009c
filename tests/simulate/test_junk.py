"""The realistic recipe's pieces: junk maps, pose errors, micrographs."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from cryofield.simulate.junk import (
    JUNK_KINDS,
    Realism,
    junk_volumes,
    micrograph_ctf,
    micrograph_of,
    perturb_rotations,
)
from cryofield.simulate.toy import toy_volumes


@pytest.fixture(scope="module")
def reference():
    return toy_volumes(24, 4.0)[0].astype(np.float64)


def test_each_kind_of_junk_differs_from_the_particle_as_it_should(reference):
    maps, codes = junk_volumes(reference, JUNK_KINDS, np.random.default_rng(0), variants=2)
    by_kind = {kind: [m for m, c in zip(maps, codes) if c == JUNK_KINDS.index(kind) + 1] for kind in JUNK_KINDS}
    assert len(by_kind["ice"]) == 1 and not by_kind["ice"][0].any()
    mass = reference.sum()
    for aggregate in by_kind["aggregate"]:  # several copies, partly leaving the box
        assert 2.0 * mass < aggregate.sum() < 5.1 * mass
    for fragment in by_kind["broken"]:  # a part of the particle, nowhere more than it
        assert 0.15 * mass < fragment.sum() < 0.9 * mass and (np.abs(fragment) <= np.abs(reference) + 1e-6).all()
    for other in by_kind["other"]:  # the same mass, another shape
        assert other.sum() == pytest.approx(mass, rel=1e-5)
        assert np.corrcoef(other.ravel(), reference.ravel())[0, 1] < 0.9
    assert all(m.shape == reference.shape and m.dtype == np.float32 for m in maps)


def test_a_given_other_protein_is_used_as_it_is(reference):
    other = np.ones_like(reference)
    maps, codes = junk_volumes(reference, ("other",), np.random.default_rng(0), other=other)
    assert len(maps) == 1 and codes.tolist() == [3] and (maps[0] == 1).all()


def test_pose_errors_have_the_asked_rms_angle():
    rng = np.random.default_rng(1)
    truth = Rotation.random(20000, random_state=2).as_matrix()
    written = perturb_rotations(truth, 2.0, rng)
    angles = np.degrees(Rotation.from_matrix(np.swapaxes(truth, 1, 2) @ written).magnitude())
    assert np.sqrt(np.mean(angles**2)) == pytest.approx(2.0, rel=0.02)
    np.testing.assert_allclose(np.linalg.det(written), 1.0, atol=1e-9)
    np.testing.assert_array_equal(perturb_rotations(truth[:3], 0.0, rng), truth[:3])


def test_micrographs_share_a_defocus_up_to_the_ice_height():
    mic = micrograph_of(10, 3)
    assert mic.tolist() == [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
    base = np.zeros((3, 9))
    base[:, 2:4] = [[10000, 9800], [15000, 14900], [20000, 19500]]
    rows = micrograph_ctf(base, micrograph_of(30000, 3), 100.0, np.random.default_rng(0))
    for m in range(3):
        du = rows[micrograph_of(30000, 3) == m, 2] - base[m, 2]
        assert abs(du.mean()) < 5 and du.std() == pytest.approx(100, rel=0.05)
    np.testing.assert_allclose(rows[:, 2] - rows[:, 3], base[micrograph_of(30000, 3), 2] - base[
        micrograph_of(30000, 3), 3])  # astigmatism kept


@pytest.mark.parametrize("settings, message", [({"junk_fraction": 1.0}, "junk fraction"),
                                               ({"junk_kinds": ("dust",)}, "junk kinds"),
                                               ({"pose_error_deg": -1}, "must be >= 0"),
                                               ({"micrographs": -2}, "micrographs")])
def test_realism_refuses_values_out_of_range(settings, message):
    with pytest.raises(ValueError, match=message):
        Realism(**settings).check()
