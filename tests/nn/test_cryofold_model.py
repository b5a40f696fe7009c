"""Cryofold's atomic model: the coarse-grained reference, the exact transform, the restraints, RMSD."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from cryofield.examples import ADK_CLOSED, example_path
from cryofield.imaging import render_volume
from cryofield.io import read_atomic_model
from cryofield.io.atoms import coarse_grain, electrons, write_coarse_pdb
from cryofield.metrics import compare_ca
from cryofield.nn import GaussianResidues


@pytest.fixture(scope="module")
def closed():
    return read_atomic_model(example_path(ADK_CLOSED))


def test_coarse_grain_two_centres_per_residue(closed):
    coarse = coarse_grain(closed)
    r = coarse.n_residues
    glycines = int(np.sum(coarse.residue_name == "GLY"))
    assert r == 214 and len(coarse.centres_angstrom) == 2 * r - glycines  # glycine: backbone only
    amino = np.isin(closed.residue_number, coarse.residue_number) & (closed.residue_name != "AP5")
    assert coarse.electrons.sum() == pytest.approx(electrons(closed.select(amino)).sum())
    assert np.allclose(coarse.electrons[:r - 1], 27) and coarse.electrons[r - 1] == 35  # N CA C O, and OXT
    np.testing.assert_allclose(coarse.centres_angstrom[:r], closed.coords_angstrom[closed.atom_name == "CA"][:r])
    assert len(coarse.bonds) == r - 1 and 3.0 < coarse.side_reach_angstrom < 7.0
    single = coarse.without_side_chains()
    assert len(single.centres_angstrom) == r and single.electrons.sum() == pytest.approx(coarse.electrons.sum())


def test_transform_is_the_real_space_sum(closed):
    """F(k) of the Gaussians, rendered and inverted, is their real-space sum on the grid (checks units and signs)."""
    from cryofield.simulate.atomic import SIGMA_PER_RESOLUTION, render

    coarse = coarse_grain(closed)
    box, apix, width = 48, 2.0, 4.0
    centre = coarse.centres_angstrom.mean(0) + np.array([1.3, -2.1, 0.7])  # off-centre: tests the phase's sign
    model = GaussianResidues(coarse, box, apix, centre, width_angstrom=width, a0=0.5)
    with torch.no_grad():
        ours = render_volume(model, box).numpy()
    truth = render(coarse.centres_angstrom, 0.5 * coarse.electrons, box, apix, width / SIGMA_PER_RESOLUTION, centre)
    # sigma = 2 px: the renderer's map is the Gaussians sampled at the voxel centres (tests/simulate)
    assert np.abs(ours - truth).max() < 1e-4 * np.abs(truth).max()
    assert np.corrcoef(ours.ravel(), truth.ravel())[0, 1] > 0.9999
    assert ours.sum() == pytest.approx(0.5 * coarse.electrons.sum(), rel=1e-3)


@torch.no_grad()
def test_restraints(closed):
    coarse = coarse_grain(closed)
    model = GaussianResidues(coarse, 64, 2.0, coarse.centres_angstrom.mean(0))
    reference = float(model.restraint())
    assert reference < 0.1 * len(coarse.bonds)  # C-alphas of the reference are about 3.8 A apart
    model.centres[5] += 2.0 / model.extent  # stretch two bonds by about 2 A
    assert float(model.restraint()) > reference + 0.3
    unbonded = GaussianResidues(coarse, 64, 2.0, coarse.centres_angstrom.mean(0), bonds=False)
    assert float(unbonded.restraint()) < 1e-6  # side chains within their reach, no bonds
    unbonded.centres[coarse.n_residues] += 20.0 / unbonded.extent  # a side chain pulled away from its C-alpha
    assert float(unbonded.restraint()) > 10.0


def test_latent_offsets_start_at_the_reference(closed):
    coarse = coarse_grain(closed)
    model = GaussianResidues(coarse, 64, 2.0, coarse.centres_angstrom.mean(0), zdim=1, hidden=16, layers=1)
    z = torch.randn(3, 1)
    positions = model.positions_angstrom(z, coarse.centres_angstrom.mean(0))
    np.testing.assert_allclose(positions.detach().numpy(), np.broadcast_to(coarse.centres_angstrom, (3,) +
                                                                           coarse.centres_angstrom.shape), atol=1e-4)
    coords = torch.rand(3, 10, 3) * 0.3
    assert model(coords, z).shape == (3, 10)


def test_coarse_pdb_and_rmsd(closed, tmp_path):
    from cryofield.examples import ADK_OPEN

    coarse = coarse_grain(closed)
    moved = coarse.centres_angstrom @ np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1]]).T + 5.0
    write_coarse_pdb(tmp_path / "two.pdb", coarse, np.stack([coarse.centres_angstrom, moved]))
    text = (tmp_path / "two.pdb").read_text()
    assert text.count("MODEL") == 2 and " CEN " in text
    written = read_atomic_model(tmp_path / "two.pdb")  # the first model
    same = compare_ca(closed, written)
    assert same.rmsd_angstrom < 1e-3 and same.within_3a == 1.0 and same.n_matched == 214
    import gemmi

    structure = gemmi.read_structure(str(tmp_path / "two.pdb"))
    second = np.array([atom.pos.tolist() for residue in structure[1]["A"] for atom in residue if atom.name == "CA"])
    np.testing.assert_allclose(second, moved[:coarse.n_residues], atol=1e-3)  # the second model: the rigid motion
    rigid = replace(written.select(written.atom_name == "CA"), coords_angstrom=second)
    assert compare_ca(written, rigid).rmsd_angstrom < 1e-3  # superposed
    assert compare_ca(written, rigid, superpose=False).rmsd_angstrom > 5.0
    open_form = compare_ca(closed, read_atomic_model(example_path(ADK_OPEN)))
    assert open_form.rmsd_angstrom == pytest.approx(7.13, abs=0.05)  # the figure


def test_projection_equals_the_slice_of_the_transform(closed):
    """The separable 2D evaluation gives the 3D transform's central slices, for latents too."""
    from cryofield.fourier import lattice
    from cryofield.imaging import half_lattice_mask
    from cryofield.imaging import slice_frequencies as slice_coords
    from cryofield.so3 import random_rotations

    coarse = coarse_grain(closed)
    box = 32
    coords = lattice(box, 2, normalized=False)[half_lattice_mask(box)]
    rotations = random_rotations(4, generator=torch.Generator().manual_seed(2), dtype=torch.float32)
    for zdim in (0, 2):
        model = GaussianResidues(coarse, box, 3.0, coarse.centres_angstrom.mean(0), zdim=zdim, hidden=8, layers=1)
        z = None
        if zdim:
            torch.nn.init.normal_(model.offsets.last.weight, std=0.01)
            z = torch.randn(4, zdim)
        for pixels in (coords, lattice(box, 2, normalized=False).reshape(-1, 2)):  # half lattice, and all (kx < 0)
            with torch.no_grad():
                direct = model(slice_coords(pixels, rotations, box), z)
                projected = model.central_slices(pixels, rotations, z)
            assert torch.allclose(projected, direct, rtol=1e-3, atol=1e-3 * direct.abs().max())
