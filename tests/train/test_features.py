"""Lazy loading, distributed training, tilt pairs, pose refinement and the Hartley domain."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from cryofield.cli.main import main
from cryofield.data import LazyParticles, PreparedParticles, epoch_plan, prepare_particles, store_particles
from cryofield.imaging import half_lattice_mask
from cryofield.imaging import slice_frequencies as slice_coords
from cryofield.io import read_map, read_particles
from cryofield.nn import PoseCorrections, VolumeDecoder, make_encoding
from cryofield.simulate.toy import make_toy_dataset
from cryofield.train import Models, TrainConfig, step_loss

SMALL = ["--enc-dim", "32", "--dec-dim", "32", "--enc-layers", "1", "--dec-layers", "1", "-b", "16"]
NN_SMALL = ["--dec-dim", "32", "--dec-layers", "1", "-b", "16"]


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return make_toy_dataset(tmp_path_factory.mktemp("toy"), n=120, box=24, apix=5.0, snr=20, seed=1)["star"]


@pytest.mark.parametrize("buffer_size", [None, 64])
def test_epoch_plan_visits_every_particle_once(buffer_size):
    generator = torch.Generator().manual_seed(0)
    plan = epoch_plan(1000, 16, generator, buffer_size=buffer_size, chunk_size=32)
    batches = [b for _, bs in plan for b in bs]
    np.testing.assert_array_equal(np.sort(np.concatenate(batches)), np.arange(1000))
    for members, bs in plan:
        np.testing.assert_array_equal(members, np.sort(np.concatenate(bs)))
        if buffer_size:  # a buffer is two whole chunks: bounded memory, sequential reads
            assert len(members) <= buffer_size and len(np.unique(members // 32)) <= 2
    assert len(plan) == (1 if buffer_size is None else 1000 // 64 + 1)
    # two processes split each global batch and together take the same steps
    shares = [epoch_plan(1000, 16, torch.Generator().manual_seed(0), buffer_size=buffer_size, chunk_size=32,
                         rank=r, world_size=2) for r in (0, 1)]
    for i, (_, bs) in enumerate(plan):
        for j, b in enumerate(bs):
            np.testing.assert_array_equal(np.sort(np.concatenate([shares[0][i][1][j], shares[1][i][1][j]])), np.sort(b))


def test_lazy_particles_match_in_memory(toy):
    table = read_particles(toy)
    memory = prepare_particles(table)
    lazy = LazyParticles(table)
    assert lazy.scale == pytest.approx(memory.scale) and len(lazy) == len(memory)
    indices = np.array([3, 4, 5, 60, 119])
    part = lazy.load(indices)
    torch.testing.assert_close(part.images, memory.images[indices])
    torch.testing.assert_close(part.ctf, memory.ctf[indices])
    torch.testing.assert_close(part.rotations, memory.rotations[indices])
    buffer = lazy.load_compact(indices)  # what training's buffers hold: as a run in memory holds them
    assert buffer.stored.dtype == torch.float16 and buffer.scale == lazy.scale
    batch = buffer.subset(torch.tensor([4, 0]))
    assert ((batch.images - memory.images[indices[[4, 0]]]).abs() <= 1e-3 * batch.images.abs() + 1e-4).all()
    torch.testing.assert_close(batch.ctf, memory.ctf[indices[[4, 0]]])


def test_compact_particles_match_ready_ones(toy):
    table = read_particles(toy)
    ready = prepare_particles(table)
    compact = store_particles(table, chunk_size=50)
    assert compact.stored.dtype == torch.float16 and compact.scale == pytest.approx(ready.scale)
    assert compact.nbytes < ready.nbytes / 2.5  # float16 transforms, CTF as 9 parameters
    all_ready = compact.ready(chunk_size=50)  # on a GPU with room, every image made ready once
    assert isinstance(all_ready, PreparedParticles) and compact.ready_nbytes == all_ready.nbytes
    torch.testing.assert_close(all_ready.images, compact.load(np.arange(120)).images)
    torch.testing.assert_close(all_ready.ctf, ready.ctf)
    indices = np.array([119, 3, 60, 4])  # any order
    for band in (None, 5.0):
        part, expected = compact.band_limited(band).load(indices), ready.band_limited(band).subset(indices)
        assert isinstance(part, PreparedParticles) and part.images.dtype == torch.complex64
        # float16 rounding: 2^-11 of each part at most, far below any image's noise
        assert ((part.images - expected.images).abs() <= 1e-3 * expected.images.abs() + 1e-4).all()
        torch.testing.assert_close(part.ctf, expected.ctf)
        torch.testing.assert_close(part.rotations, expected.rotations)
        torch.testing.assert_close(part.coords, expected.coords)


def test_compact_particles_keep_float32_beyond_float16s_range(toy, monkeypatch):
    from cryofield.data import dataset

    monkeypatch.setattr(dataset, "FLOAT16_LARGEST", 0.5)  # as if a coefficient were beyond float16
    table = read_particles(toy)
    compact = store_particles(table, chunk_size=50)
    assert compact.stored.dtype == torch.float32
    torch.testing.assert_close(compact.load(np.arange(120)).images, prepare_particles(table).images)


def test_train_vae_lazy(toy, tmp_path, monkeypatch):
    """A lazy run keeps the particles' metadata in mapped files (not with --table-storage memory): same numbers."""
    from cryofield.io import ParticleTable
    from cryofield.io.mapped import is_mapped_array

    mapped = []
    real = ParticleTable.in_mapped_files
    monkeypatch.setattr(ParticleTable, "in_mapped_files", lambda self, *a: mapped.append(real(self, *a)) or mapped[-1])
    args = ["train-vae", str(toy), "--zdim", "2", "-n", "2", "--lazy", "--buffer-size", "48"] + SMALL
    out = tmp_path / "lazy"
    assert main(args + ["-o", str(out)]) == 0
    assert np.load(out / "z.npy").shape == (120, 2)
    config = json.loads((out / "config.json").read_text())
    assert config["lazy"] and config["buffer_size"] == 48 and config["device"] == "cpu"
    assert len(mapped) == 1 and is_mapped_array(mapped[0].rotations) and is_mapped_array(mapped[0].ctf.to_numpy())
    assert main(args + ["-o", str(tmp_path / "memory"), "--table-storage", "memory"]) == 0
    assert len(mapped) == 1
    assert np.array_equal(np.load(out / "z.npy"), np.load(tmp_path / "memory/z.npy"))


def _in_two_processes(args: list[str]) -> None:
    """``cryofield ARGS`` under torchrun with 2 gloo ranks (one thread each)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "cryofield", *args]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    if result.returncode != 0 and "exitcode: -6" in result.stderr:
        # A rank aborted (SIGABRT) at exit in 4 of 16 launches before `release_runtime` (0 of 20 since);
        # launch once more so that only a repeatable failure fails the test.
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]


def test_two_processes_agree_with_one(toy, tmp_path):
    """torchrun with 2 gloo ranks takes the same steps as 1 process (each rank half of every batch; the pose
    corrections' rows of its half, gathered after each epoch)."""
    args = ["train-nn", str(toy), "-n", "2", "--no-amp", "--lr", "1e-3", "--refine-poses"] + NN_SMALL
    assert main(args + ["-o", str(tmp_path / "one")]) == 0
    _in_two_processes(args + ["-o", str(tmp_path / "two")])
    assert json.loads((tmp_path / "two/config.json").read_text())["world_size"] == 2
    one = torch.load(tmp_path / "one/checkpoints/last.pt", weights_only=True)["models"]
    two = torch.load(tmp_path / "two/checkpoints/last.pt", weights_only=True)["models"]
    for part in ("decoder", "poses"):
        for name, tensor in one[part].items():
            torch.testing.assert_close(two[part][name], tensor, atol=1e-4, rtol=1e-3)
    assert float(one["poses"]["shift.weight"].abs().max()) > 0  # the corrections moved
    log_one = json.loads((tmp_path / "one/log.jsonl").read_text().splitlines()[-1])
    log_two = json.loads((tmp_path / "two/log.jsonl").read_text().splitlines()[-1])
    assert log_two["mse"] == pytest.approx(log_one["mse"], rel=1e-4)


def test_tilt_series_in_two_processes(tmp_path):
    """A VAE over tilt series under torchrun: each rank encodes half of every batch of particles."""
    from cryofield.examples import ADK_CLOSED, example_path

    data = tmp_path / "et"
    assert main(["simulate", "--pdb", str(example_path(ADK_CLOSED)), "--states", "1", "--box", "16", "--apix", "4",
                 "-n", "12", "--snr", "1", "--tilt-series", "--tilt-step", "30", "-o", str(data)]) == 0
    _in_two_processes(["train-vae", str(data / "particles.star"), "--tilt-series", "--ntilts", "3", "-n", "2",
                       "--zdim", "2", "-o", str(tmp_path / "two")] + SMALL[:-1] + ["4"])
    config = json.loads((tmp_path / "two/config.json").read_text())
    assert config["world_size"] == 2 and config["ntilts"] == 3
    assert np.load(tmp_path / "two/z.npy").shape == (12, 2)
    record = json.loads((tmp_path / "two/log.jsonl").read_text().splitlines()[-1])
    assert record["images_per_second"] == pytest.approx(3 * record["particles_per_second"], rel=0.02)


def test_ab_initio_in_two_processes_agrees_with_one(toy, tmp_path):
    """The table schedule under torchrun: each rank searches half of every chunk and steps the pose and
    latent tables' rows of its half of every batch; the rows are gathered after each pass."""
    args = ["abinit", str(toy), "--dec-dim", "32", "--dec-layers", "1", "-b", "16", "--kmin", "4", "--kmax", "8",
            "--base-level", "1", "--rounds", "2", "--n-shifts", "5", "--no-amp", "--schedule", "table",
            "--pretrain-images", "32", "--epochs-search", "1", "--epochs-table", "1", "--search-chunk", "48",
            "--zdim", "2", "--z-table", "--pose-lr", "0.01"]
    assert main(args + ["-o", str(tmp_path / "one")]) == 0
    _in_two_processes(args + ["-o", str(tmp_path / "two")])
    one, two = (torch.load(tmp_path / name / "checkpoints/last.pt", weights_only=True) for name in ("one", "two"))
    assert json.loads((tmp_path / "two/config.json").read_text())["world_size"] == 2
    torch.testing.assert_close(two["poses"]["rotations"], one["poses"]["rotations"])  # the search's
    for name, tensor in one["models"]["decoder"].items():
        torch.testing.assert_close(two["models"]["decoder"][name], tensor, atol=1e-4, rtol=1e-3)
    # The pose and latent tables: Adam's steps on near-zero gradients magnify rounding (a step's sign can
    # flip), so a few values differ by up to a step (--pose-lr); nearly all agree to rounding.
    for part in ("poses", "encoder"):
        for name, tensor in one["models"][part].items():
            difference = (two["models"][part][name] - tensor).abs()
            assert float(difference.median()) < 1e-5 and float((difference > 1e-3).float().mean()) < 0.05
    # every row's moments were gathered into the process that wrote the checkpoint (rank 0): the rows
    # the other process stepped too
    for state in two["pose_optimizer"]["state"].values():
        assert bool((state["exp_avg_sq"].reshape(len(state["exp_avg_sq"]), -1) > 0).any(1).all())
    np.testing.assert_allclose(read_particles(tmp_path / "two/poses.star").rotations,
                               read_particles(tmp_path / "one/poses.star").rotations, atol=1e-3)


def test_tilt_pairs(toy, tmp_path):
    sim = tmp_path / "tilt"
    assert main(["simulate", "--volume", str(toy.parent / "truth_vols/vol_000.mrc"), "-n", "64", "--snr", "5",
                 "--tilt-pairs", "--tilt-deg", "40", "-o", str(sim)]) == 0
    out = tmp_path / "run"
    assert main(["train-vae", str(sim / "particles.star"), "--tilt", str(sim / "tilt.star"), "-o", str(out),
                 "--zdim", "2", "-n", "2"] + SMALL) == 0
    assert np.load(out / "z.npy").shape == (64, 2)
    state = torch.load(out / "checkpoints/last.pt", weights_only=True)["models"]["encoder"]
    assert any(name.startswith("joint.") for name in state)  # the tilt-pair encoder
    # a tilt stack without poses: the stage tilt gives them
    assert main(["select", str(sim / "tilt.star"), "--ind", str(_all(tmp_path, 64)), "-o",
                 str(tmp_path / "tilt.mrcs")]) == 0
    assert main(["train-vae", str(sim / "particles.star"), "--tilt", str(tmp_path / "tilt.mrcs"), "--tilt-deg", "40",
                 "-o", str(tmp_path / "run2"), "--zdim", "2", "-n", "1"] + SMALL) == 0
    assert main(["eval-images", str(out), "-o", str(tmp_path / "z.npy")]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "z.npy"), np.load(out / "z.npy"), atol=1e-5)
    assert main(["train-vae", str(sim / "particles.star"), "--tilt", str(toy), "-o", str(tmp_path / "bad"),
                 "--zdim", "2"]) == 2


def _all(tmp_path, n):
    path = tmp_path / "all.txt"
    np.savetxt(path, np.arange(n), fmt="%d")
    return path


class _Blobs(torch.nn.Module):
    """An analytic volume: Gaussian blobs, ``F(k) = sum exp(-2 pi^2 s^2 |k|^2 - 2 pi i k.c)`` (k in 1/px)."""

    def __init__(self, centres, width=1.5):
        super().__init__()
        self.centres, self.width = centres, width

    def forward(self, coords, z=None):
        envelope = torch.exp(-2 * torch.pi ** 2 * self.width ** 2 * coords.pow(2).sum(-1))
        phase = -2 * torch.pi * coords @ self.centres.T
        return (envelope[..., None] * torch.polar(torch.ones_like(phase), phase)).sum(-1)


def test_pose_refinement_recovers_known_errors():
    box, n = 32, 24
    g = torch.Generator().manual_seed(0)
    volume = _Blobs(torch.randn(6, 3, generator=g) * 4)
    half = half_lattice_mask(box)
    from cryofield.fourier import lattice
    coords = lattice(box, 2, normalized=False)[half]
    from cryofield.so3 import random_rotations
    nominal = random_rotations(n, generator=g, dtype=torch.float32)
    truth = PoseCorrections(n)
    with torch.no_grad():
        truth.rotvec.weight.copy_(torch.randn(n, 3, generator=g) * np.radians(4))
        truth.shift.weight.copy_(torch.randn(n, 2, generator=g) * 0.8)
    with torch.no_grad():
        d_rotation, d_shift = truth(torch.arange(n))
        # images centred with the nominal shifts while the particles sit at nominal + d_shift
        clean = volume(slice_coords(coords, nominal @ d_rotation, box))
        angle = -2 * torch.pi * (d_shift @ coords.T) / box
        images = clean * torch.polar(torch.ones_like(angle), -angle)
    data = PreparedParticles(images, coords, nominal, None, 1.0, box, 1.0)
    models = Models(volume, None, PoseCorrections(n))
    config = TrainConfig(particles="", outdir="", amp=False)
    optimizer = torch.optim.SparseAdam(models.poses.parameters(), lr=0.01)
    indices = torch.arange(n)
    first = None
    for _ in range(300):
        mse, _, _ = step_loss(models, data, config, indices=indices)
        first = first if first is not None else mse.item()
        optimizer.zero_grad()
        mse.backward()
        optimizer.step()
    assert mse.item() < 0.01 * first
    with torch.no_grad():
        rot_error = np.degrees((models.poses.rotvec.weight - truth.rotvec.weight).norm(dim=1).numpy())
        shift_error = (models.poses.shift.weight - truth.shift.weight).norm(dim=1).numpy()
        rot_before = np.degrees(truth.rotvec.weight.norm(dim=1).numpy())
    assert np.median(rot_before) > 4 and np.median(rot_error) < 0.05 and np.quantile(rot_error, 0.9) < 0.5
    assert np.median(shift_error) < 0.01 and np.quantile(shift_error, 0.9) < 0.1


def test_refine_poses_and_hartley_domain_commands(toy, tmp_path, capsys):
    out = tmp_path / "refine"
    assert main(["train-nn", str(toy), "-o", str(out), "-n", "4", "--lr", "3e-3", "--refine-poses",
                 "--domain", "hartley"] + NN_SMALL) == 0
    poses = np.load(out / "poses.npz")
    table = read_particles(toy)
    assert poses["rotations"].shape == (120, 3, 3) and poses["shifts_px"].shape == (120, 2)
    np.testing.assert_allclose(poses["rotations"], table.rotations, atol=0.1)  # small corrections after 4 short epochs
    np.testing.assert_allclose(np.linalg.det(poses["rotations"]), 1, atol=1e-5)
    assert json.loads((out / "config.json").read_text())["domain"] == "hartley"
    capsys.readouterr()
    assert main(["evaluate", str(out), "--truth", str(toy.parent), "--images", "2", "--json"]) == 0
    error = json.loads(capsys.readouterr().out)["pose_error"]
    assert 0 < error["rotation_deg_median"] < 5 and 0 <= error["shift_px_median"] < 1
    volume, _ = read_map(out / "volume.mrc")
    truth, _ = read_map(toy.parent / "truth_vols/vol_000.mrc")
    assert np.corrcoef(volume.ravel(), truth.ravel())[0, 1] > 0.2  # the Hartley parameterisation learns too


def test_hartley_decoder_is_hermitian():
    decoder = VolumeDecoder(make_encoding("gaussian", 16, None, 0.5), 0, 32, 2, domain="hartley")
    k = torch.randn(50, 3) * 0.2
    with torch.no_grad():
        a, b = decoder(k), decoder(-k)
    torch.testing.assert_close(b, a.conj())
    with pytest.raises(ValueError, match="domain"):
        VolumeDecoder(make_encoding("gaussian", 16, None, 0.5), domain="real")
