"""Ab initio reconstruction: the schedule, and the command end to end on a tiny dataset."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cryofield.cli.main import main
from cryofield.io import read_map, read_particles
from cryofield.simulate.toy import make_toy_dataset
from cryofield.train.abinit import AbinitConfig

SMALL = ["--dec-dim", "32", "--dec-layers", "1", "-b", "16", "--kmin", "5", "--kmax", "10", "--base-level", "1",
         "--rounds", "2", "--n-shifts", "5", "--search-every", "2"]


def test_the_table_schedule_is_the_default_unless_the_search_schedules_stages_are_set():
    assert AbinitConfig(particles="p", outdir="o").schedule == "table"
    for settings in ({"epochs_fixed": 0}, {"epochs_refine": 10}, {"method": "bnb"}, {"schedule": "search"},
                     {"method": "gd", "epochs_fixed": 0, "epochs_refine": 0}):
        assert AbinitConfig(particles="p", outdir="o", **settings).schedule == "search"


def test_schedule_searches_resets_and_band():
    config = AbinitConfig(particles="p", outdir="o", schedule="search")
    assert config.epochs == 90
    searched = [e for e in range(config.epochs) if config.searches(e)]
    assert searched == [1, 6, 11, 16, 21, 26, 60, 65, 70, 75, 80, 85]  # random poses first; none in stage 2
    assert [e for e in range(config.epochs) if config.resets(e)] == [30]
    assert config.stage(29) == 1 and config.stage(30) == 2 and config.stage(60) == 3
    assert config.search_kmax(0, 64) == 12 and config.search_kmax(25, 64) == 32 and config.search_kmax(60, 256) == 48
    plain = AbinitConfig(particles="p", outdir="o", epochs_fixed=0, epochs_refine=0)
    assert plain.epochs == 30 and not any(plain.resets(e) for e in range(30))


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return make_toy_dataset(tmp_path_factory.mktemp("toy"), n=96, box=24, apix=5.0, snr=20, seed=2)["star"]


def test_abinit_writes_poses_maps_and_resumes(toy, tmp_path, capsys):
    out = tmp_path / "run"
    args = [str(toy), "-o", str(out), *SMALL, "--epochs-search", "3", "--epochs-fixed", "1", "--epochs-refine", "1",
            "--checkpoint", "2"]
    assert main(["abinit", *args]) == 0
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["stage"] for r in records] == [1, 1, 1, 2, 3]
    assert [("search_seconds" in r) for r in records] == [False, True, False, False, True]
    assert records[3].get("reset") and all(r["grad_high"] > 0 for r in records)
    # one volume's map from the poses at each checkpoint (every second epoch and each stage's last)
    assert sorted(p.name for p in (out / "maps").iterdir()) == [
        *(f"reconstruction_epoch{e:03d}.mrc" for e in (2, 3, 4, 5)), "stage1.mrc", "stage2.mrc", "stage3.mrc"]
    assert [("reconstruction_angstrom" in r) for r in records] == [False, True, True, True, True]
    printed = capsys.readouterr().out
    assert "map from the poses: " in printed and "% moved > 5 deg" in printed
    assert len(list((out / "poses").glob("directions_epoch*.png"))) == 2
    assert (out / "convergence.png").stat().st_size > 10_000
    assert all(0 <= r["pose_moved_fraction"] <= 1 for r in records if "search_seconds" in r)
    volume, apix = read_map(out / "volume.mrc")
    assert volume.shape == (24, 24, 24) and apix == pytest.approx(5.0)
    posed = read_particles(out / "poses.star")  # absolute stack paths: readable from anywhere
    assert posed.n == 96 and np.allclose(np.linalg.det(posed.rotations), 1, atol=1e-6)
    assert posed.images(np.arange(2)).shape == (2, 24, 24)
    # the final reconstruction is backproject's of the poses written, half maps and FSC included
    assert main(["backproject", str(out / "poses.star"), "-o", str(tmp_path / "bp")]) == 0
    for mine, theirs in (("reconstruction.mrc", "volume.mrc"), ("reconstruction_half_a.mrc", "half_a.mrc")):
        (ours, apix), (reference, _) = read_map(out / mine), read_map(tmp_path / "bp" / theirs)
        assert apix == pytest.approx(5.0) and np.allclose(ours, reference, atol=1e-5 * np.abs(reference).max())
    assert np.allclose(np.loadtxt(out / "reconstruction_fsc.txt"), np.loadtxt(tmp_path / "bp" / "fsc.txt"))
    assert np.array_equal(read_map(out / "maps" / "reconstruction_epoch005.mrc")[0],
                          read_map(out / "reconstruction.mrc")[0])
    # resume from the epoch-4 checkpoint reproduces the last epoch exactly
    last = (out / "log.jsonl").read_text().splitlines()[-1]
    (out / "checkpoints/last.pt").write_bytes((out / "checkpoints/epoch_0003.pt").read_bytes())
    (out / "log.jsonl").write_text("\n".join((out / "log.jsonl").read_text().splitlines()[:4]) + "\n")
    assert main(["abinit", str(toy), "-o", str(out), "--resume"]) == 0
    again = json.loads((out / "log.jsonl").read_text().splitlines()[-1])
    assert again["mse"] == pytest.approx(json.loads(last)["mse"], rel=1e-5)


def test_online_search_trains_on_each_chunk(toy, tmp_path):
    out = tmp_path / "online"
    assert main(["abinit", str(toy), "-o", str(out), *SMALL, "--epochs-search", "2", "--no-reset",
                 "--search-chunk", "40"]) == 0
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert records[1]["search_seconds"] > 0 and records[1]["train_seconds"] > 0 and records[1]["mse"] > 0
    assert read_particles(out / "poses.star").n == 96


def test_lazy_buffers_are_held_compactly_and_centred_when_made_ready(toy):
    from cryofield.data import LazyParticles
    from cryofield.so3 import random_rotations
    from cryofield.train.abinit.poses import CentredSource, Poses, SubsetSource

    table = read_particles(toy)
    n = table.n
    raw = LazyParticles(table, rotations=np.broadcast_to(np.eye(3), (n, 3, 3)).copy(), shifts_px=np.zeros((n, 2)))
    generator = torch.Generator().manual_seed(0)
    poses = Poses(random_rotations(n, generator=generator, dtype=torch.float32), 3 * torch.randn(n, 2,
                                                                                                 generator=generator))
    source = SubsetSource(CentredSource(raw, poses), np.arange(10, 60))
    positions = np.array([2, 5, 30, 31, 49])
    ready, buffer = source.load(positions), source.load_compact(positions)
    assert buffer.stored.dtype == torch.float16 and buffer.shifts_px is not None
    batch = buffer.subset(torch.arange(len(positions)))
    assert ((batch.images - ready.images).abs() <= 1e-3 * ready.images.abs() + 1e-4).all()
    torch.testing.assert_close(batch.rotations, poses.rotations[10 + positions])
    torch.testing.assert_close(batch.ctf, ready.ctf)


def test_abinit_bad_settings_exit_2(toy, tmp_path, capsys):
    assert main(["abinit", str(toy), "-o", str(tmp_path / "x"), "--kmin", "20", "--kmax", "10"]) == 2
    assert "--kmin" in capsys.readouterr().err
    assert main(["abinit", str(toy), "-o", str(tmp_path / "y"), "--resume"]) == 2


def test_abinit_branch_and_bound(toy, tmp_path):
    out = tmp_path / "bnb"
    assert main(["abinit", str(toy), "-o", str(out), "--method", "bnb", "--dec-dim", "32", "--dec-layers", "1",
                 "-b", "16", "--kmin", "5", "--kmax", "10", "--rounds", "2", "--n-shifts", "3",
                 "--epochs-search", "2", "--no-reset"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert (config["method"], config["base_level"], config["rounds"]) == ("bnb", 1, 2)
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert "search_seconds" in records[1] and read_particles(out / "poses.star").n == 96


def test_heterogeneous_abinit_writes_latents_and_resumes(toy, tmp_path):
    """--zdim trains an encoder with the search: z.npy in particle order, a map per stage at the median latent."""
    out = tmp_path / "het"
    args = [str(toy), "-o", str(out), *SMALL, "--zdim", "2", "--enc-dim", "32", "--enc-layers", "1",
            "--epochs-search", "2", "--epochs-fixed", "1", "--epochs-refine", "0", "--search-chunk", "48",
            "--search-groups", "3", "--checkpoint", "1"]
    assert main(["abinit", *args]) == 0
    assert np.load(out / "z.npy").shape == (96, 2)
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert all(r["kl"] > 0 and r["grad_high"] > 0 for r in records)
    assert sorted(p.name for p in (out / "maps").iterdir()) == ["stage1.mrc", "stage2.mrc"]
    state = torch.load(out / "checkpoints/last.pt", weights_only=True)
    assert state["models"]["encoder"]
    last = records[-1]
    (out / "checkpoints/last.pt").write_bytes((out / "checkpoints/epoch_0001.pt").read_bytes())
    (out / "log.jsonl").write_text("\n".join((out / "log.jsonl").read_text().splitlines()[:2]) + "\n")
    assert main(["abinit", str(toy), "-o", str(out), "--resume"]) == 0
    again = json.loads((out / "log.jsonl").read_text().splitlines()[-1])
    assert again["mse"] == pytest.approx(last["mse"], rel=1e-5)
    # the default: each chunk searched against the model at its mean latent
    single = tmp_path / "one_group"
    assert main(["abinit", str(toy), "-o", str(single), *SMALL, "--zdim", "2", "--enc-dim", "32", "--enc-layers", "1",
                 "--epochs-search", "2", "--no-reset", "--search-chunk", "48"]) == 0
    assert json.loads((single / "config.json").read_text())["search_groups"] == 1
    assert np.load(single / "z.npy").shape == (96, 2)


def test_abinit_with_tilt_pairs(toy, tmp_path, capsys):
    """Tilt pairs: both images searched together; the partners' poses go to poses_tilt.star."""
    from cryofield.so3 import geodesic_distance, rotation_about_x

    sim = tmp_path / "tilt"
    assert main(["simulate", "--volume", str(toy.parent / "truth_vols/vol_000.mrc"), "-n", "48", "--snr", "5",
                 "--tilt-pairs", "--tilt-deg", "40", "-o", str(sim)]) == 0
    out = tmp_path / "run"
    assert main(["abinit", str(sim / "particles.star"), "--tilt", str(sim / "tilt.star"), "--tilt-deg", "40",
                 "-o", str(out), *SMALL, "--epochs-search", "2", "--no-reset", "--search-chunk", "24"]) == 0
    untilted, tilted = read_particles(out / "poses.star"), read_particles(out / "poses_tilt.star")
    assert untilted.n == tilted.n == 48
    expected = rotation_about_x(40.0).numpy() @ untilted.rotations
    assert float(geodesic_distance(torch.from_numpy(tilted.rotations), torch.from_numpy(expected)).max()) < 1e-5
    assert main(["abinit", str(sim / "particles.star"), "--tilt", str(sim / "tilt.star"), "--method", "bnb",
                 "-o", str(tmp_path / "bad")]) == 2
    assert "bnb" in capsys.readouterr().err


@pytest.mark.parametrize("method", ["gd", "pose-vae"])
def test_abinit_baselines_learn_poses(toy, tmp_path, method):
    """The seed's baselines run one stage, learn the poses (no search) and write them like the search does."""
    out = tmp_path / method
    args = [str(toy), "-o", str(out), "--method", method, "--dec-dim", "32", "--dec-layers", "1", "--enc-dim", "32",
            "--enc-layers", "1", "-b", "16", "--epochs-search", "2", "--search-every", "1", "--pose-lr", "0.01"]
    assert main(["abinit", *args]) == 0
    config = json.loads((out / "config.json").read_text())
    assert (config["epochs"], config["epochs_fixed"], config["method"]) == (2, 0, method)
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert len(records) == 2 and not any("search_seconds" in r for r in records)
    assert len(list((out / "poses").glob("directions_epoch*.png"))) == 2
    state = torch.load(out / "checkpoints/last.pt", weights_only=True)
    posed = read_particles(out / "poses.star")
    assert np.allclose(np.linalg.det(posed.rotations), 1, atol=1e-5)
    start = torch.load(out / "checkpoints/last.pt", weights_only=True)["poses"]["rotations"]
    np.testing.assert_allclose(posed.rotations, start.double().numpy(), atol=1e-5)
    if method == "gd":  # the corrections moved the random starts
        from cryofield.so3 import random_rotations

        first = random_rotations(96, generator=torch.Generator().manual_seed(0), dtype=torch.float32)
        assert "pose_optimizer" in state and not torch.allclose(start, first)
    else:
        assert state["models"]["pose_encoder"] and records[0]["kl"] > 0


def test_s2s2_rotations_are_proper_and_onto():
    from cryofield.so3 import random_rotations, s2s2_to_matrix

    six = torch.randn(50, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    rotations = s2s2_to_matrix(six)
    eye = torch.eye(3, dtype=torch.float64).expand(50, 3, 3)
    torch.testing.assert_close(rotations.transpose(-1, -2) @ rotations, eye)
    torch.testing.assert_close(torch.linalg.det(rotations), torch.ones(50, dtype=torch.float64))
    truth = random_rotations(20, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(s2s2_to_matrix(torch.cat([truth[..., 0], 3 * truth[..., 1]], -1)), truth)


def test_lazy_abinit_reads_a_buffer_at_a_time_and_resumes(toy, tmp_path, monkeypatch):
    """--lazy: searches (online and at once), training passes and the latents read at most --buffer-size
    images at a time (the gradient log's probe, 64); the run resumes exactly, and its poses are as good as
    in memory's."""
    from cryofield.data import LazyParticles
    from cryofield.so3 import geodesic_distance

    reads = []
    for name in ("load", "load_compact"):  # images ready, and buffers held compactly
        read = getattr(LazyParticles, name)
        monkeypatch.setattr(LazyParticles, name, lambda self, indices, read=read: reads.append(len(indices))
                            or read(self, indices))
    out = tmp_path / "lazy"
    args = [str(toy), "-o", str(out), *SMALL, "--lazy", "--buffer-size", "32", "--zdim", "2", "--enc-dim", "32",
            "--enc-layers", "1", "--epochs-search", "3", "--epochs-fixed", "1", "--epochs-refine", "1",
            "--search-chunk", "16", "--checkpoint", "2"]
    assert main(["abinit", *args]) == 0
    assert sorted(set(reads)) == [32, 64] and sum(reads) > 5 * 96  # every epoch read every image in buffers
    assert np.load(out / "z.npy").shape == (96, 2)
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [("search_seconds" in r) for r in records] == [False, True, False, False, True]
    last = records[-1]
    (out / "checkpoints/last.pt").write_bytes((out / "checkpoints/epoch_0003.pt").read_bytes())
    (out / "log.jsonl").write_text("\n".join((out / "log.jsonl").read_text().splitlines()[:4]) + "\n")
    assert main(["abinit", str(toy), "-o", str(out), "--resume"]) == 0
    again = json.loads((out / "log.jsonl").read_text().splitlines()[-1])
    assert again["mse"] == pytest.approx(last["mse"], rel=1e-5)
    reads.clear()
    at_once = tmp_path / "at_once"  # a search of all particles against one model, read in buffers
    assert main(["abinit", str(toy), "-o", str(at_once), *SMALL, "--lazy", "--buffer-size", "40",
                 "--epochs-search", "2", "--no-reset", "--search-chunk", "0"]) == 0
    assert sorted(set(reads)) == [16, 32, 40, 64]  # buffers of 40 in training (in chunks of 40), the last 16

    def spread(poses):  # rotations relative to the first particle's: free of the global rotation
        r = torch.from_numpy(read_particles(poses).rotations)
        truth = torch.from_numpy(read_particles(toy).rotations)
        return geodesic_distance(r @ r[:1].transpose(1, 2), truth @ truth[:1].transpose(1, 2)).median()

    memory = tmp_path / "memory"
    assert main(["abinit", str(toy), "-o", str(memory), *SMALL, "--epochs-search", "2", "--no-reset",
                 "--search-chunk", "0"]) == 0
    assert float(spread(at_once / "poses.star")) < 1.5 * float(spread(memory / "poses.star")) + 0.05


def test_lazy_abinit_needs_a_search(toy, tmp_path, capsys):
    assert main(["abinit", str(toy), "-o", str(tmp_path / "gd"), "--method", "gd", "--lazy", "--epochs-fixed", "0",
                 "--epochs-refine", "0"]) == 2
    assert "--lazy needs a pose search" in capsys.readouterr().err


def test_abinit_warns_when_the_loss_stalls_or_the_latents_collapse(tmp_path):
    from types import SimpleNamespace

    from cryofield.io import WorkDir
    from cryofield.train.abinit.method import Abinit, _warn_if_collapsed

    workdir = WorkDir(tmp_path)
    tmp_path.mkdir(exist_ok=True)
    method = SimpleNamespace(_stalled_stages=set())
    improving = [{"epoch": e, "stage": 1, "mse": 1.0 - 0.01 * e} for e in range(8)]
    for record in improving:
        workdir.append_log(record)
    Abinit._warn_if_stalled(method, workdir, improving[-1])  # still improving: nothing said
    assert not method._stalled_stages
    flat = [{"epoch": 8 + e, "stage": 1, "mse": 0.93} for e in range(6)]
    for record in flat:
        workdir.append_log(record)
    with pytest.warns(UserWarning, match="stage 1: the image loss has not improved by 0.1 % in 5 epochs"):
        Abinit._warn_if_stalled(method, workdir, flat[-1])
    Abinit._warn_if_stalled(method, workdir, flat[-1])  # once per stage
    reset = {"epoch": 14, "stage": 2, "mse": 0.9, "reset": True}
    workdir.append_log(reset)
    Abinit._warn_if_stalled(method, workdir, reset)  # a fresh stage starts its own count
    assert method._stalled_stages == {1}
    rng = np.random.default_rng(0)
    _warn_if_collapsed(workdir, rng.normal(size=(100, 4)), 1)  # spread like the prior: fine
    with pytest.warns(UserWarning, match="latent space has collapsed"):
        _warn_if_collapsed(workdir, 0.01 * rng.normal(size=(100, 4)), 3)
    assert (tmp_path / "train.log").read_text().count("warning: ") == 2


def test_table_schedule_epochs_stages_and_band():
    """cryoDRGN-AI's schedule: pretraining (epoch 0), a search in each of 3 epochs ramping to kmax, then the table."""
    config = AbinitConfig(particles="p", outdir="o", schedule="table")
    assert (config.epochs, config.epochs_search, config.epochs_table, config.epochs_fixed) == (31, 3, 27, 0)
    assert [e for e in range(config.epochs) if config.searches(e)] == [1, 2, 3]
    assert [config.stage(e) for e in (0, 3, 4, 30)] == [1, 1, 2, 2]
    assert not any(config.resets(e) for e in range(config.epochs))
    assert config.search_kmax(1, 64) == pytest.approx(12 + 20 / 3) and config.search_kmax(3, 64) == 32
    # one volume's decoder fit as far as the next search looks in the pretraining and each search epoch but the
    # last (at 128 px bands 24, 36, 48, then every pixel); with --zdim (its maps are the decoder's) every pixel
    assert config.train_band == "search"
    assert [config.train_band_px(e, 128) for e in (0, 1, 2, 3, 4)] == [24, 36, 48, None, None]
    assert [config.train_band_px(e, 64) for e in (0, 1, 2)] == [pytest.approx(12 + 20 / 3), pytest.approx(12 + 40 / 3),
                                                               None]  # 32 is every pixel
    vae = AbinitConfig(particles="p", outdir="o", schedule="table", zdim=8)
    full = AbinitConfig(particles="p", outdir="o", schedule="table", train_band="full")
    searched = AbinitConfig(particles="p", outdir="o", schedule="search")
    assert vae.train_band == "full" and searched.train_band == "full"
    assert not any(c.train_band_px(e, 128) for c in (vae, full, searched) for e in range(4))
    with pytest.raises(ValueError, match="no reset or refinement stage"):
        AbinitConfig(particles="p", outdir="o", schedule="table", epochs_fixed=2)
    with pytest.raises(ValueError, match="belongs to the table schedule"):
        AbinitConfig(particles="p", outdir="o", schedule="search", epochs_table=2)


def test_pose_table_starts_at_the_searched_poses_with_sparse_steps():
    from cryofield.data import PreparedParticles
    from cryofield.nn import PoseTable
    from cryofield.so3 import matrix_to_s2s2, random_rotations, s2s2_to_matrix
    from cryofield.train.config import TrainConfig
    from cryofield.train.models import build_models
    from cryofield.train.objective import step_loss

    rotations = random_rotations(20, generator=torch.Generator().manual_seed(0), dtype=torch.float32)
    assert torch.allclose(s2s2_to_matrix(matrix_to_s2s2(rotations)), rotations, atol=1e-6)
    table = PoseTable(rotations)
    config = TrainConfig(particles="p", outdir="o", dec_dim=16, dec_layers=1, amp=False)
    models = build_models(config, 12, 60)
    from cryofield.fourier import lattice
    from cryofield.imaging import half_lattice_mask

    half = half_lattice_mask(12)
    coords = lattice(12, 2, normalized=False)[half]
    batch = PreparedParticles(torch.randn(4, int(half.sum()), dtype=torch.complex64), coords, rotations[:4], None,
                              1.0, 12, 2.0)
    plain = step_loss(models, batch, config, sample=False)[0]
    models.poses = table
    indices = torch.arange(4)
    with_table = step_loss(models, batch, config, indices=indices, sample=False)[0]
    assert float(with_table.detach()) == pytest.approx(float(plain.detach()), rel=1e-5)  # starts at the search's poses
    with_table.backward()
    assert table.rotation.weight.grad.is_sparse and set(table.rotation.weight.grad.coalesce().indices()[0].tolist()) \
        == {0, 1, 2, 3}
    optimizer = torch.optim.SparseAdam(table.parameters(), lr=1e-2)
    optimizer.step()
    moved, shifts = table.all()
    assert torch.equal(moved[4:], s2s2_to_matrix(matrix_to_s2s2(rotations[4:])))  # other rows untouched
    assert not torch.allclose(moved[:4], rotations[:4]) and shifts.shape == (20, 2)


def test_decoder_fit_inside_a_band_sees_its_pixels_and_the_encoder_all(tmp_path):
    from cryofield.data import PreparedParticles
    from cryofield.fourier import lattice
    from cryofield.imaging import half_lattice_mask
    from cryofield.so3 import random_rotations
    from cryofield.train.config import TrainConfig
    from cryofield.train.models import build_models
    from cryofield.train.objective import band_pixels, step_loss

    half = half_lattice_mask(12)
    coords = lattice(12, 2, normalized=False)[half]
    rotations = random_rotations(4, generator=torch.Generator().manual_seed(0), dtype=torch.float32)
    batch = PreparedParticles(torch.randn(4, len(coords), dtype=torch.complex64), coords, rotations,
                              torch.rand(4, len(coords)), 1.0, 12, 2.0)
    pixels = band_pixels(coords, 3.5)
    assert 0 < len(pixels) < len(coords) and bool((coords[pixels].norm(dim=1) < 3.5).all())
    config = TrainConfig(particles="p", outdir="o", dec_dim=16, dec_layers=1, amp=False)
    models = build_models(config, 12, len(coords))
    with torch.no_grad():
        inside = float(step_loss(models, batch, config, pixels=pixels)[0])
        assert inside == pytest.approx(float(step_loss(models, batch.band_limited(3.5), config)[0]), rel=1e-6)
        assert inside != pytest.approx(float(step_loss(models, batch, config)[0]), rel=1e-3)
    # with an image encoder: z from every pixel, the decoder fit inside the band
    vae = TrainConfig(particles="p", outdir="o", dec_dim=16, dec_layers=1, enc_dim=16, enc_layers=1, zdim=2, amp=False)
    models = build_models(vae, 12, len(coords))
    mse, kl, _ = step_loss(models, batch, vae, sample=False, pixels=pixels)
    mse.backward()
    assert float(kl.detach()) > 0 and next(models.encoder.parameters()).grad is not None


def test_runs_saved_before_a_setting_load_as_they_ran(tmp_path):
    """A config without ``train_band`` (runs before it existed) fits every pixel; one without ``residual``, pre."""
    AbinitConfig(particles="p", outdir=str(tmp_path)).save(tmp_path)
    values = json.loads((tmp_path / "config.json").read_text())
    assert values["train_band"] == "search"
    del values["train_band"], values["residual"]
    (tmp_path / "config.json").write_text(json.dumps(values))
    old = AbinitConfig.load(tmp_path)
    assert (old.train_band, old.residual) == ("full", "pre")
    assert old.train_band_px(0, 128) is None


def test_table_schedule_runs_lazily_writes_poses_and_resumes(toy, tmp_path, monkeypatch, capsys):
    """Pretraining on some particles, searches, the table's epochs; exact resume inside either stage."""
    from cryofield.data import LazyParticles

    reads = []
    original = LazyParticles.load
    monkeypatch.setattr(LazyParticles, "load", lambda self, i: reads.append(len(i)) or original(self, i))
    out = tmp_path / "table"
    args = [str(toy), "-o", str(out), *SMALL, "--schedule", "table", "--pretrain-images", "40", "--epochs-search",
            "2", "--epochs-table", "2", "--search-chunk", "48", "--checkpoint", "1", "--lazy", "--buffer-size", "64"]
    assert main(["abinit", *args]) == 0
    assert max(reads) <= 64
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["stage"] for r in records] == [1, 1, 1, 2, 2]
    assert records[0]["pretrain_images"] == 40 and "search_seconds" not in records[0]
    assert all("search_seconds" in r for r in records[1:3]) and records[3].get("table_start")
    assert all(r["pose_change_deg_median"] >= 0 and 0 <= r["pose_moved_fraction"] <= 1 for r in records[1:])
    # by default one volume's pretraining is fit up to the first search's band, the first search epoch up to the
    # second's; its map reconstructed from the poses at each checkpoint but the pretraining's
    assert [r.get("train_band_px") for r in records] == [pytest.approx(7.5), 10, None, None, None]
    assert "pose table started: median change" in capsys.readouterr().out
    assert sorted(p.name for p in (out / "maps").iterdir()) == [
        *(f"reconstruction_epoch{e:03d}.mrc" for e in (2, 3, 4, 5)), "stage1.mrc", "stage2.mrc"]
    state = torch.load(out / "checkpoints/last.pt", weights_only=True)
    table = state["models"]["poses"]["rotation.weight"]
    posed = read_particles(out / "poses.star")  # the table's poses, not the last search's
    from cryofield.so3 import s2s2_to_matrix

    assert np.allclose(posed.rotations, s2s2_to_matrix(table).double().numpy(), atol=1e-5)
    last = records[-1]
    for checkpoint, kept in (("epoch_0003.pt", 4), ("epoch_0002.pt", 3)):  # inside the table stage; its start
        (out / "checkpoints/last.pt").write_bytes((out / "checkpoints" / checkpoint).read_bytes())
        (out / "log.jsonl").write_text("\n".join((out / "log.jsonl").read_text().splitlines()[:kept]) + "\n")
        assert main(["abinit", str(toy), "-o", str(out), "--resume"]) == 0
        again = json.loads((out / "log.jsonl").read_text().splitlines()[-1])
        assert again["mse"] == pytest.approx(last["mse"], rel=1e-5)
        assert again["pose_change_deg_median"] == pytest.approx(last["pose_change_deg_median"], rel=1e-4, abs=1e-4)


def test_table_schedule_with_latents_and_tilt_pairs(toy, tmp_path):
    """--zdim trains the encoder through both stages; tilt pairs keep the stage tilt between the two tables."""
    from cryofield.so3 import geodesic_distance, rotation_about_x

    table = ["--schedule", "table", "--pretrain-images", "32", "--epochs-search", "1", "--epochs-table", "1"]
    het = tmp_path / "het"
    assert main(["abinit", str(toy), "-o", str(het), *SMALL, *table, "--zdim", "2", "--enc-dim", "32",
                 "--enc-layers", "1", "--search-chunk", "48"]) == 0
    records = [json.loads(line) for line in (het / "log.jsonl").read_text().splitlines()]
    assert [r["stage"] for r in records] == [1, 1, 2] and all(r["kl"] > 0 for r in records)
    assert records[-1].get("table_start") and np.load(het / "z.npy").shape == (96, 2)
    sim = tmp_path / "tilt"
    assert main(["simulate", "--volume", str(toy.parent / "truth_vols/vol_000.mrc"), "-n", "48", "--snr", "5",
                 "--tilt-pairs", "--tilt-deg", "40", "-o", str(sim)]) == 0
    out = tmp_path / "tilted"
    assert main(["abinit", str(sim / "particles.star"), "--tilt", str(sim / "tilt.star"), "--tilt-deg", "40",
                 "-o", str(out), *SMALL, *table, "--search-chunk", "24", "--pose-lr", "0.05"]) == 0
    untilted, tilted = read_particles(out / "poses.star"), read_particles(out / "poses_tilt.star")
    state = torch.load(out / "checkpoints/last.pt", weights_only=True)
    searched = state["poses"]["rotations"].double().numpy()
    assert not np.allclose(untilted.rotations, searched, atol=1e-4)  # the table's poses, moved by its training
    expected = rotation_about_x(40.0).numpy() @ untilted.rotations
    assert float(geodesic_distance(torch.from_numpy(tilted.rotations), torch.from_numpy(expected)).max()) < 1e-5


@pytest.mark.parametrize("kl", [False, True])
def test_latent_table_trains_with_the_pose_table_and_resumes(toy, tmp_path, kl):
    """--z-table: latents as rows (points, or Gaussians with the KL term), stepped with the poses' table."""
    out = tmp_path / "ztable"
    args = [str(toy), "-o", str(out), *SMALL, "--schedule", "table", "--pretrain-images", "32", "--epochs-search",
            "1", "--epochs-table", "2", "--zdim", "2", "--z-table", *(["--z-table-kl"] if kl else []),
            "--search-chunk", "48", "--checkpoint", "1"]
    assert main(["abinit", *args]) == 0
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert all((r["kl"] > 0) == kl for r in records)
    state = torch.load(out / "checkpoints/last.pt", weights_only=True)
    rows = state["models"]["encoder"]["mean.weight"]
    start = torch.load(out / "checkpoints/epoch_0000.pt", weights_only=True)["models"]["encoder"]["mean.weight"]
    pretrained = np.sort(np.random.default_rng(0 + 1).choice(96, 32, replace=False))  # the seed's pretraining set
    others = np.setdiff1d(np.arange(96), pretrained)
    first = torch.load(out / "checkpoints/epoch_0000.pt", weights_only=True)
    assert first["pose_optimizer"]["state"]  # the pretraining stepped the table...
    config = json.loads((out / "config.json").read_text())
    assert config["seed"] == 0 and config["z_table"] and ("logvar.weight" in state["models"]["encoder"]) == kl
    fresh = 0.1 * torch.randn(96, 2, generator=torch.Generator().manual_seed(1000))
    assert torch.equal(start[others], fresh[others]) and not torch.equal(start[pretrained], fresh[pretrained])
    searched = torch.load(out / "checkpoints/epoch_0001.pt", weights_only=True)["models"]["encoder"]["mean.weight"]
    assert (searched != start).any(1).all()  # the online search trained each chunk's own rows: every particle's
    assert np.allclose(np.load(out / "z.npy"), rows.numpy())  # z.npy is the table
    assert main(["eval-vol", str(out), "--z", "0", "0", "-o", str(tmp_path / "maps")]) == 0
    last = records[-1]
    (out / "checkpoints/last.pt").write_bytes((out / "checkpoints/epoch_0002.pt").read_bytes())
    (out / "log.jsonl").write_text("\n".join((out / "log.jsonl").read_text().splitlines()[:3]) + "\n")
    assert main(["abinit", str(toy), "-o", str(out), "--resume"]) == 0  # both tables' optimiser state restored
    again = json.loads((out / "log.jsonl").read_text().splitlines()[-1])
    assert again["mse"] == pytest.approx(last["mse"], rel=1e-5)


def test_tables_on_disk_train_as_in_memory_and_resume(toy, tmp_path, monkeypatch):
    """--table-storage disk: pose and latent tables and their moments in mapped files, the same numbers."""
    from cryofield.train import tables

    made = []
    real = tables.mapped_zeros  # every file is made by it
    monkeypatch.setattr(tables, "mapped_zeros", lambda shape, dtype, folder=None: made.append(shape) or
                        real(shape, dtype, folder))
    common = [str(toy), *SMALL, "--schedule", "table", "--pretrain-images", "32", "--epochs-search", "1",
              "--epochs-table", "2", "--zdim", "2", "--z-table", "--z-table-kl", "--search-chunk", "48",
              "--checkpoint", "1"]
    states = {}
    for where in ("memory", "disk"):
        made.clear()
        assert main(["abinit", *common, "-o", str(tmp_path / where), "--table-storage", where]) == 0
        states[where] = torch.load(tmp_path / where / "checkpoints/last.pt", weights_only=True)
        # in files: the latent table (means, log-variances), the pose table (rotations, shifts), two moments each;
        # the searched poses (rotations, shifts): the random starts, then those the search filled
        assert len(made) == (0 if where == "memory" else 12 + 2 + 2), made
    for part in ("encoder", "poses"):
        for name, value in states["memory"]["models"][part].items():
            assert torch.equal(value, states["disk"]["models"][part][name]), (part, name)
    for name, value in states["memory"]["poses"].items():  # the searched poses, filled in files
        assert torch.equal(value, states["disk"]["poses"][name]), name
    moments = [(s["exp_avg"], s["exp_avg_sq"]) for s in states["memory"]["pose_optimizer"]["state"].values()]
    on_disk = [(s["exp_avg"], s["exp_avg_sq"]) for s in states["disk"]["pose_optimizer"]["state"].values()]
    assert all(torch.equal(a, b) and torch.equal(c, d) for (a, c), (b, d) in zip(moments, on_disk))
    # resumed inside the table stage, from files again: the moments loaded go back into files
    out = tmp_path / "disk"
    last = json.loads((out / "log.jsonl").read_text().splitlines()[-1])
    (out / "checkpoints/last.pt").write_bytes((out / "checkpoints/epoch_0002.pt").read_bytes())
    (out / "log.jsonl").write_text("\n".join((out / "log.jsonl").read_text().splitlines()[:3]) + "\n")
    made.clear()
    assert main(["abinit", str(toy), "-o", str(out), "--resume", "--table-storage", "disk"]) == 0
    assert len(made) == 12 + 2  # the loaded moments copied into the files made for the fresh tables; the poses
    again = json.loads((out / "log.jsonl").read_text().splitlines()[-1])
    assert again["mse"] == pytest.approx(last["mse"], rel=1e-5)
    resumed = torch.load(out / "checkpoints/last.pt", weights_only=True)["models"]["poses"]["rotation.weight"]
    assert torch.allclose(resumed, states["memory"]["models"]["poses"]["rotation.weight"], atol=1e-6)


def test_mapped_tensors_are_stepped_in_place_by_sparse_adam():
    from cryofield.train.tables import MappedTables, is_mapped, mapped_tensor

    values = torch.randn(6, 3)
    mapped = mapped_tensor(values)
    assert is_mapped(mapped) and not is_mapped(values) and torch.equal(mapped, values)
    pair = [torch.nn.Embedding(6, 3, sparse=True) for _ in range(2)]
    pair[1].load_state_dict(pair[0].state_dict())
    optimizers = [torch.optim.SparseAdam(e.parameters(), lr=0.1) for e in pair]
    storage = MappedTables()
    assert storage.map_tables({"t": pair[1]}) == 1 and storage.map_moments(optimizers[1]) == 2
    assert storage.map_tables({"t": pair[1]}) == 0 and storage.map_moments(optimizers[1]) == 0  # already there
    for rows in ([1, 4], [4, 5], [0]):
        for table, optimizer in zip(pair, optimizers):
            optimizer.zero_grad()
            table(torch.tensor(rows)).square().sum().backward()
            optimizer.step()
    state = optimizers[1].state[pair[1].weight]
    assert is_mapped(pair[1].weight.data) and is_mapped(state["exp_avg"]) and state["step"] == 3
    assert torch.equal(pair[0].weight, pair[1].weight)
    assert torch.equal(optimizers[0].state[pair[0].weight]["exp_avg_sq"], state["exp_avg_sq"])
