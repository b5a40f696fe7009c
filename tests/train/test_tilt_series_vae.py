"""The VAE over tilt series (issue 26, item 3): one latent per particle from its least damaged tilts."""

import json

import numpy as np
import pytest
import torch

from cryofield.cli.main import main
from cryofield.data import PreparedParticles, TiltSeriesParticles
from cryofield.examples import ADK_CLOSED, ADK_OPEN, example_path
from cryofield.io import read_particles
from cryofield.io.tilts import TiltSeries
from cryofield.nn import TiltSeriesEncoder
from cryofield.train import VaeConfig
from cryofield.train.models import build_models
from cryofield.train.objective import step_loss


def test_members_are_the_least_exposed_tilts_of_each_particle():
    # particle 0: four images, exposures 30, 0, 20, 10; particle 1: two images, 5 and 0
    tilts = TiltSeries(np.array([0, 0, 0, 0, 1, 1]), ("a", "b"), exposure=np.array([30.0, 0, 20, 10, 5, 0]),
                       tilt_deg=np.array([-9.0, 0, 6, -3, 3, 0]))
    assert tilts.order == "exposure"
    assert tilts.members(3).tolist() == [[1, 3, 2], [5, 4, -1]]
    assert tilts.members().tolist() == [[1, 3, 2, 0], [5, 4, -1, -1]]
    assert tilts.members(99).shape == (2, 4)
    by_tilt = TiltSeries(tilts.particle, tilts.names, tilt_deg=tilts.tilt_deg)
    assert by_tilt.order == "tilt" and by_tilt.members(2).tolist() == [[1, 3], [5, 4]]
    in_file_order = TiltSeries(tilts.particle, tilts.names)
    assert in_file_order.order == "file" and in_file_order.members(3).tolist() == [[0, 1, 2], [4, 5, -1]]


def _images(n: int, pixels: int = 5) -> PreparedParticles:
    """``n`` images whose every coefficient is the image's row number (to see which rows a batch holds)."""
    rows = torch.arange(n, dtype=torch.float32)
    return PreparedParticles(torch.complex(rows[:, None].repeat(1, pixels), torch.zeros(n, pixels)),
                             torch.zeros(pixels, 2), torch.eye(3).repeat(n, 1, 1), None, 1.0, 8, 2.0)


def test_a_batch_holds_each_particles_tilts_and_masks_the_padding():
    members = np.array([[1, 3, 2], [5, 4, -1], [0, -1, -1]])
    data = TiltSeriesParticles(_images(6), members)
    assert len(data) == 3 and data.ntilts == 3 and data.random_access
    batch = data.load(np.array([1, 2]))
    assert batch.images.real[:, 0].tolist() == [5, 4, 5, 0, 0, 0]  # padding: copies of the particle's first
    assert batch.tilt_mask.tolist() == [[True, True, False], [True, False, False]]
    data.images.load_compact = data.images.subset  # as a lazy source reads a buffer: these images, in order
    buffer = data.load_compact(np.array([0, 2]))  # only these particles' images
    assert len(buffer) == 2 and len(buffer.images) == 4
    assert buffer.subset(torch.tensor([1, 0])).images.real[:, 0].tolist() == [0, 0, 0, 1, 3, 2]
    with pytest.raises(ValueError, match="at least one image"):
        TiltSeriesParticles(_images(6), np.array([[-1, 2]]))


@pytest.mark.parametrize("pooling", ["concat", "mean", "max"])
def test_the_encoder_ignores_padding_and_pools_as_told(pooling):
    torch.manual_seed(0)
    encoder = TiltSeriesEncoder(12, 16, 1, 2, 3, embedding=4, pooling=pooling)
    x = torch.randn(6, 12)
    mask = torch.tensor([[True, True, True], [True, True, False]])
    mu, logvar = encoder(x, mask)
    assert mu.shape == logvar.shape == (2, 2)
    changed = x.clone()
    changed[5] = 100.0  # the padding of the second particle
    torch.testing.assert_close(encoder(changed, mask)[0], mu)
    swapped = x[[1, 0, 2, 3, 4, 5]]  # the first particle's first two tilts in the other order
    moved = encoder(swapped, mask)[0][0]
    if pooling == "concat":  # the order is information: the least exposed tilts come first
        assert not torch.allclose(moved, mu[0])
        with pytest.raises(ValueError, match="concatenates 3 tilts"):
            encoder(x[:4], mask[:, :2])
    else:
        torch.testing.assert_close(moved, mu[0])


def test_the_loss_leaves_out_the_padding_and_counts_one_kl_per_particle():
    torch.manual_seed(0)
    config = VaeConfig(particles="x", outdir="y", zdim=2, tilt_series=True, ntilts=3, enc_dim=16, dec_dim=16,
                       enc_layers=1, dec_layers=1, amp=False)
    from cryofield.fourier import lattice
    from cryofield.imaging import half_lattice_mask

    coords = lattice(8, 2, normalized=False)[half_lattice_mask(8)]
    n = len(coords)
    net = build_models(config, 8, n)
    images = torch.randn(6, n, dtype=torch.complex64)
    batch = PreparedParticles(images, coords, torch.eye(3).repeat(6, 1, 1), None, 1.0, 8, 2.0,
                              tilt_mask=torch.tensor([[True, True, True], [True, False, False]]))
    mse, kl, _ = step_loss(net, batch, config, sample=False)
    changed = PreparedParticles(images.clone(), coords, batch.rotations, None, 1.0, 8, 2.0,
                                tilt_mask=batch.tilt_mask)
    changed.images[4:] = 50.0  # padding
    assert torch.allclose(step_loss(net, changed, config, sample=False)[0], mse)
    mu, logvar = net.encoder(torch.cat([images.real, images.imag], -1), batch.tilt_mask)
    per_particle = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(-1)
    torch.testing.assert_close(kl, per_particle.sum() / 4)  # four images in all
    with pytest.raises(Exception, match="neither --tilt"):
        VaeConfig(particles="x", outdir="y", tilt_series=True, refine_poses=True).check()


@pytest.fixture(scope="module")
def two_states(tmp_path_factory):
    """40 particles x 7 tilts (+-60 degrees, 20 degrees apart, 5 e/A^2 each) of two states of adenylate kinase."""
    out = tmp_path_factory.mktemp("two_states")
    assert main(["simulate", "--pdb", str(example_path(ADK_CLOSED)), "--pdb", str(example_path(ADK_OPEN)),
                 "--states", "2", "--box", "24", "--apix", "3", "-n", "40", "--snr", "0.5", "--tilt-series",
                 "--tilt-step", "20", "--dose-per-tilt", "5", "-o", str(out)]) == 0
    return out


def test_train_vae_learns_one_latent_per_tilt_series(two_states, tmp_path, capsys):
    star = two_states / "particles.star"
    keep = tmp_path / "keep.txt"
    np.savetxt(keep, np.arange(0, 40, 2), fmt="%d")  # particles, not images
    common = ["--zdim", "2", "--ntilts", "4", "--enc-dim", "32", "--dec-dim", "32", "--enc-layers", "1",
              "--dec-layers", "1", "-b", "4", "--seed", "3"]
    run = tmp_path / "vae"
    assert main(["train-vae", str(star), "--tilt-series", "-o", str(run), "-n", "2", "--ind", str(keep)]
                + common) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["tilt_series"] and config["ntilts"] == 4 and config["data_exposure_weighted"]
    z = np.load(run / "z.npy")
    assert z.shape == (20, 2) and np.isfinite(z).all()
    lazy = tmp_path / "lazy"
    assert main(["train-vae", str(star), "--tilt-series", "-o", str(lazy), "-n", "2", "--ind", str(keep), "--lazy",
                 "--buffer-size", "24"] + common) == 0  # buffers of 6 particles' 4 tilts
    assert np.load(lazy / "z.npy").shape == (20, 2)
    assert main(["train-vae", str(star), "--tilt-series", "-o", str(run), "--resume", "-n", "3"]) == 0
    assert len([json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()
                if '"epoch"' in line and '"mse"' in line]) >= 3
    # every tilt the particles have, when asked for more
    wide = tmp_path / "wide"
    assert main(["train-vae", str(star), "--tilt-series", "-o", str(wide), "-n", "1", "--tilt-pooling", "mean"]
                + common[:2] + ["--ntilts", "50"] + common[4:]) == 0
    assert json.loads((wide / "config.json").read_text())["ntilts"] == 7
    # eval-images reads the run's particles as it did: per particle, the same latents
    assert main(["eval-images", str(run), "-o", str(tmp_path / "z.npy")]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "z.npy"), np.load(run / "z.npy"), atol=1e-5)
    losses = np.load(tmp_path / "z.loss.npy")
    assert losses.shape == (20,) and (losses > 0).all()
    assert main(["eval-images", str(run), "--lazy", "--refine-z", "2", "-o", str(tmp_path / "zr.npy")]) == 0
    assert np.load(tmp_path / "zr.npy").shape == (20, 2)
    # a selection in z names particles (the run's --ind ones), and select keeps all their tilts
    z = np.load(run / "z.npy")[:, 0]
    chosen = tmp_path / "chosen.txt"
    threshold = float(np.median(z))  # as float64 text that reads back exactly: bf16 latents can tie with it
    assert main(["filter", str(run), "--z-range", str(threshold), "99", "-o", str(chosen)]) == 0
    particles = np.loadtxt(chosen, dtype=int)
    np.testing.assert_array_equal(particles, np.arange(0, 40, 2)[z >= threshold])
    assert main(["select", str(star), "--tilt-series", "--ind", str(chosen), "-o", str(tmp_path / "sub.star")]) == 0
    sub = read_particles(tmp_path / "sub.star", tilt_series=True)
    assert sub.tilts.n_particles == len(particles) and sub.n == 7 * len(particles)


def test_tilt_series_latents_separate_the_states(two_states, tmp_path):
    """A few epochs on 40 particles: the two states fall on two sides of z."""
    from sklearn.metrics import roc_auc_score

    run = tmp_path / "vae"
    assert main(["train-vae", str(two_states / "particles.star"), "--tilt-series", "-o", str(run), "-n", "12",
                 "--zdim", "1", "--ntilts", "7", "--enc-dim", "64", "--dec-dim", "64", "--enc-layers", "2",
                 "--dec-layers", "2", "-b", "4", "--lr", "1e-3", "--seed", "0"]) == 0
    state = np.load(two_states / "truth.npz")["state"]
    z = np.load(run / "z.npy")[:, 0]
    auc = roc_auc_score(state, z)
    assert max(auc, 1 - auc) > 0.9, auc
