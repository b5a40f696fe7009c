"""Neural training benchmarks: `cryofield train-vae` against `cryodrgn train_vae`, and lazy-loading memory.

    python benchmarks/bench_train.py speed [--data DIR | --box 64] [--n 2000] [--epochs 2] [--batch-size 8]
        [--peer PATH]
    python benchmarks/bench_train.py memory [--workdir DIR]
    python benchmarks/bench_train.py homogeneous [--n 5000] [--epochs 20]
    python benchmarks/bench_train.py accuracy --n 10000 --epochs 10 [--zdims 1 8] [--refine-z 10]
    python benchmarks/bench_train.py recipes --n 10000 --epochs 10 [--recipes circular discrete]

speed: both tools train a VAE with the same architecture (encoder and decoder 256x3,
zdim 8, Gaussian features, Fourier domain, batch 8, lr 1e-4) on the same first ``--n``
particles of a `cryofield simulate` dataset (default: adenylate kinase closed -> open,
50 states, 10,000 images, 64^2, SNR 0.1, CTF, shifts +-3 px; simulated if ``--data`` is not
given; with ``--box`` 128 or 256 only the first ``--n``, at that size in the same 96 A box), for the
same epochs. Throughput is images x epochs / wall time of the training
command (start-up and data loading included for both). Both runs are scored the same way:
|Spearman| of latent PC1 with the true coordinate and the per-image FSC (the seed's
protocol, 100 images along the coordinate) of maps generated at each image's z (cryoDRGN's
through its own eval_vol). Also prints the fraction of the machine's bf16 matmul peak
that cryofield's training step reaches, and on a GPU each tool's peak GPU memory (nvidia-smi).

memory: peak RSS of `train-vae --lazy` and `abinit --lazy` (small networks) on 10,000 and
100,000 particles of the same simulation, and of `abinit` in memory for comparison, each run
stopped after ``--seconds`` (default 240: past the first shuffling buffers, where memory reaches
its steady state, and for `abinit` into its first search): lazy runs should not grow with N.

accuracy: `train-vae` for each of ``--zdims`` (same architecture as speed, each zdim's
default beta) on the first ``--n`` particles, scored by `cryofield evaluate --json`; then
`cryodrgn train_vae` with zdim 8 and the same settings and epochs, scored by the same
metric code (|Spearman| of latent PC1, per-image FSC of maps at each image's z). With
``--refine-z STEPS`` (default 10) each cryofield run is scored a second time with its latents
refined per image by `eval-images --refine-z` (cryoDRGN has no such step).

recipes: the seed's circular 1-D (a domain turned a full 360 degrees in 100 states) and
discrete 10-class (10 random configurations of two domains) datasets (section 3.7.1) made from
adenylate kinase, ``--n`` images each, 64^2, SNR 0.1, CTF, shifts; both tools train the speed
architecture (zdim 8, the seed's 10-D latent rounded to the peer's usual 8) for ``--epochs`` and
are scored by the same code: per-image FSC, and the adjusted Rand index of k-means on z (discrete)
or how well z places each image on the circle (circular).

homogeneous: `train-nn` (256x3) and `backproject` on the same particles of one structure
(closed adenylate kinase, 64^2, SNR 0.5, CTF, shifts): FSC against the true map (area
under the curve to Nyquist, and the 0.5 crossing) of both.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

BIN = Path(sys.executable).parent
CRYOFIELD = os.environ.get("CRYOFIELD", str(BIN / "cryofield"))  # override: a launcher where none is installed
MOLMAP = ["--render", "molmap"]  # the tables in docs/benchmarks.md were measured on molmap-style maps
ARCH = ["--enc-dim", "256", "--enc-layers", "3", "--dec-dim", "256", "--dec-layers", "3", "--zdim", "8",
        "--pe-type", "gaussian", "--domain", "fourier", "-b", "8", "--lr", "1e-4"]


def timed(cmd: list[str], limit_s: float | None = None) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of a command; raises with its stderr when it fails.

    With ``limit_s`` the command is interrupted (SIGINT) after that many seconds, which is
    not a failure. Without GNU time (``/usr/bin/time``) the peak is that of all children so far.
    """
    start = time.perf_counter()
    prefix = ["timeout", "--signal=INT", str(limit_s)] if limit_s else []
    gnu_time = Path("/usr/bin/time").exists()
    wrapper = ["/usr/bin/time", "-f", "MAXRSS %M"] if gnu_time else []
    result = subprocess.run(wrapper + prefix + cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0 and not (limit_s and result.returncode in (124, 130)):
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{result.stderr[-3000:]}")
    if gnu_time:
        return seconds, int(re.findall(r"MAXRSS (\d+)", result.stderr)[-1]) / 1024
    import resource

    return seconds, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def simulate_accuracy_dataset(outdir: Path, n: int = 10000, seed: int = 0, box: int = 64) -> Path:
    """The accuracy dataset of issue 4: a 1-D adenylate kinase motion in 50 states, 64^2, SNR 0.1.

    Other ``box`` sizes image the same 96 A box more finely (1.5 A/px at 64 px, 0.75 at 128), shifts
    likewise (+-3 px at 64 px).
    """
    from cryofield.examples import ADK_CLOSED, ADK_OPEN, example_path

    if not (outdir / "truth.npz").is_file():
        subprocess.run([CRYOFIELD, "simulate", *MOLMAP, "--pdb", str(example_path(ADK_CLOSED)), "--pdb",
                        str(example_path(ADK_OPEN)), "--states", "50", "--box", str(box), "--apix", f"{96 / box:g}",
                        "-n", str(n), "--snr", "0.1", "--shift-px", str(3 * box // 64), "--seed", str(seed), "-o",
                        str(outdir)], check=True)
    return outdir


class GpuMemory:
    """Peak GPU memory in use while the ``with`` block runs, in MB, sampled by ``nvidia-smi`` every 100 ms.

    Measured from outside, the same way for any program (CUDA context included); ``peak_mb`` is None
    where there is no ``nvidia-smi``.
    """

    def __enter__(self) -> GpuMemory:
        self.peak_mb, self._sampler = None, None
        if shutil.which("nvidia-smi"):
            self._sampler = subprocess.Popen(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits",
                                              "-lms", "100"], stdout=subprocess.PIPE, text=True)
        return self

    def __exit__(self, *exc) -> None:
        if self._sampler is None:
            return
        self._sampler.terminate()
        samples = [float(line.split()[0]) for line in self._sampler.communicate()[0].splitlines() if line.strip()]
        self.peak_mb = max(samples, default=None)

    def __str__(self) -> str:
        return "" if self.peak_mb is None else f", GPU memory at peak {self.peak_mb:.0f} MB (nvidia-smi)"


def first_particles(data: Path, n: int, work: Path) -> tuple[Path, Path]:
    """The first ``n`` particles of ``data``: ``(star, ind)``, a STAR file of them beside the stack it
    names (for both tools) and their index file ``work/ind.txt`` (for ``--ind`` on the full STAR file)."""
    ind = work / "ind.txt"
    np.savetxt(ind, np.arange(n), fmt="%d")
    star = data / f"first_{n}.star"
    star.unlink(missing_ok=True)
    subprocess.run([CRYOFIELD, "select", str(data / "particles.star"), "--ind", str(ind), "-o", str(star)],
                   check=True, capture_output=True)
    return star, ind


def score_latents_and_maps(z: np.ndarray, truth_dir: Path, rows: np.ndarray, maps_for) -> dict:
    """Scores of latents ``z`` (N, zdim) of the particles ``rows`` of a simulation, with maps from
    ``maps_for(z_rows) -> list of arrays``.

    ``spearman_pc1``: |Spearman| of latent PC1 with the first true coordinate. ``per_image_fsc``:
    the seed's protocol on 100 images (spaced along the coordinate, or spread over the states when
    there are at most 20). With at most 20 states, ``ari``: k-means on z (k = states) against
    them. With ``circular`` coordinates (degrees), ``circle_r2``: how well z places each image on
    the circle, the 5-fold cross-validated R^2 of a 15-nearest-neighbour regression from z to
    (cos, sin) of the angle (1 is perfect, 0 no better than the mean).
    """
    import torch

    from cryofield.io import read_map
    from cryofield.metrics import adjusted_rand_index, evaluation_images, latent_pc_spearman, per_image_fsc

    truth = np.load(truth_dir / "truth.npz")
    coordinates, states = truth["coordinates"][rows], truth["state"][rows]
    n_states = len(np.unique(states))
    picks = evaluation_images(coordinates, 100, states=states if n_states <= 20 else None)
    maps = maps_for(z[picks])
    pairs = [(torch.from_numpy(np.asarray(m, np.float32)),
              torch.from_numpy(read_map(truth_dir / "truth_vols" / f"vol_{int(states[i]):03d}.mrc")[0]))
             for m, i in zip(maps, picks)]
    score = {"spearman_pc1": float(latent_pc_spearman(z, coordinates, 1)[0, 0]), "per_image_fsc": per_image_fsc(pairs)}
    if n_states <= 20:
        from sklearn.cluster import KMeans

        labels = KMeans(n_clusters=n_states, n_init=10, random_state=0).fit_predict(z)
        score["ari"] = adjusted_rand_index(labels, states)
    if circular_coordinate(coordinates):
        from sklearn.model_selection import cross_val_score
        from sklearn.neighbors import KNeighborsRegressor

        angle = np.deg2rad(coordinates[:, 0])
        target = np.column_stack([np.cos(angle), np.sin(angle)])
        score["circle_r2"] = float(cross_val_score(KNeighborsRegressor(15), z, target, cv=5, scoring="r2").mean())
    return score


def circular_coordinate(coordinates: np.ndarray) -> bool:
    """Whether the first coordinate is a full turn in degrees (a `simulate --circular` dataset)."""
    values = np.unique(coordinates[:, 0])
    return len(values) > 20 and values.min() == 0 and 360 - values.max() <= 360 / len(values) + 1e-6


def describe(score: dict) -> str:
    """One line of scores."""
    fsc = score["per_image_fsc"]
    extra = "".join(f"; {name} {score[name]:.3f}" for name in ("ari", "circle_r2") if name in score)
    return (f"  |Spearman| PC1 {score['spearman_pc1']:.3f}; per-image FSC 0.5 at {fsc['resolution_px_mean']:.2f} "
            f"+- {fsc['resolution_px_std']:.2f} px, AUC {fsc['auc_mean']:.3f}{extra}")


def bf16_peak_gflops(device: str = "cpu", repeats: int = 20) -> float:
    """Measured bf16 matmul throughput of ``device`` (2048^3 products on CPU, 8192^3 on a GPU), GFLOP/s."""
    import torch

    size = 8192 if device.startswith("cuda") else 2048
    a = torch.randn(size, size, dtype=torch.bfloat16, device=device)
    b = torch.randn(size, size, dtype=torch.bfloat16, device=device)
    for _ in range(3):
        a @ b
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e9


def step_gflop_per_image(box: int = 64) -> float:
    """Matmul work of one training image of the benchmark's VAE, as cryofield's step does it, GFLOP.

    Each linear layer costs its forward product and as much again for its weights' gradient,
    and once more for its input's gradient except in each network's first layer (its input
    needs none). The decoder runs at every half-lattice point, its first layer on the
    encoding only (the latent's columns are applied once per image, a negligible 8 x 256);
    the encoder once per image.
    """
    from torch import nn

    from cryofield.imaging import half_lattice_mask
    from cryofield.nn import ImageEncoder, VolumeDecoder, make_encoding

    points = int(half_lattice_mask(box).sum())
    zdim = 8
    decoder = VolumeDecoder(make_encoding("gaussian", box, None, 0.5), zdim, 256, 3)
    encoder = ImageEncoder(2 * points, 256, 3, zdim)

    def step_macs(module: nn.Module, skip_inputs: int = 0) -> int:
        layers = [(m.in_features, m.out_features) for m in module.modules() if isinstance(m, nn.Linear)]
        layers[0] = (layers[0][0] - skip_inputs, layers[0][1])
        forward = sum(i * o for i, o in layers)
        return 2 * forward + forward - layers[0][0] * layers[0][1]

    return 2 * (step_macs(decoder, skip_inputs=zdim) * points + step_macs(encoder)) / 1e9


def our_maps(workdir: Path):
    """``maps_for`` of :func:`score_latents_and_maps` for a cryofield run: its maps at given latents."""
    def maps_for(zs):
        from cryofield.train import RunVolumes

        return list(RunVolumes(workdir)(np.asarray(zs)))
    return maps_for


def peer_epoch_seconds(run: Path) -> list[float]:
    """Seconds of each training epoch of a cryoDRGN run, read from its ``run.log``."""
    times = re.findall(r"=====> Epoch: \d+ .*Finished in (\d+):(\d+):([\d.]+)", (run / "run.log").read_text())
    return [3600 * int(h) + 60 * int(m) + float(sec) for h, m, sec in times]


def with_batch_size(arch: list[str], batch_size: int) -> list[str]:
    """``arch`` with its ``-b`` value replaced."""
    arch = list(arch)
    arch[arch.index("-b") + 1] = str(batch_size)
    return arch


def run_peer(peer: str, star: Path, theirs: Path, data: Path, rows: np.ndarray, epochs: int,
             arch: list[str], score: bool = True) -> tuple[float, float, dict | None]:
    """Train `cryodrgn train_vae` on ``star`` into ``theirs``; (seconds, peak RSS MB, scores or None)."""
    from cryofield.io import load_legacy_pickle, read_map

    if theirs.exists():
        shutil.rmtree(theirs)
    theirs.mkdir()
    for what in ("pose", "ctf"):
        subprocess.run([peer, f"parse_{what}_star", str(star), "-o", str(theirs / f"{what}.pkl")], check=True,
                       capture_output=True)
    t_peer, rss_peer = timed([peer, "train_vae", str(star), "--poses", str(theirs / "pose.pkl"), "--ctf",
                              str(theirs / "ctf.pkl"), "-n", str(epochs), "-o", str(theirs / "run"),
                              "--no-analysis"] + arch)  # its automatic analysis is not training
    z_file = theirs / "run" / "z.pkl"
    if not z_file.exists():
        z_file = theirs / "run" / f"z.{epochs - 1}.pkl"
    z_peer = np.asarray(load_legacy_pickle(z_file))

    def peer_maps(zs):
        np.savetxt(theirs / "zpicks.txt", zs)
        weights = sorted((theirs / "run").glob("weights*.pkl"), key=os.path.getmtime)[-1]
        subprocess.run([peer, "eval_vol", str(weights), "-c", str(theirs / "run/config.yaml"), "--zfile",
                        str(theirs / "zpicks.txt"), "-o", str(theirs / "maps"), "--Apix", "1.5"], check=True,
                       capture_output=True)
        return [read_map(theirs / "maps" / f"vol_{i + 1:03d}.mrc")[0] for i in range(len(zs))]  # numbered from 1

    score_peer = score_latents_and_maps(z_peer, data, rows, peer_maps) if score else None
    return t_peer, rss_peer, score_peer


def speed(args) -> None:
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    if args.data:
        data = Path(args.data)
    elif args.box == 64:
        data = simulate_accuracy_dataset(work / "data")
    else:  # only what is trained on: larger images take long to simulate
        data = simulate_accuracy_dataset(work / f"data_{args.box}px_{args.n}", n=args.n, box=args.box)
    rows = np.arange(args.n)
    star, _ = first_particles(data, args.n, work)
    ours = work / "cryofield"
    if ours.exists():
        shutil.rmtree(ours)
    arch = with_batch_size(ARCH, args.batch_size)
    compile_flag = ["--compile", args.compile] if args.compile else []
    with GpuMemory() as gpu_ours:
        t_ours, rss_ours = timed([CRYOFIELD, "train-vae", str(star), "-o", str(ours), "-n", str(args.epochs)] + arch
                                 + compile_flag + shlex.split(args.cryofield_args))
    rate_ours = args.n * args.epochs / t_ours
    log = [json.loads(line) for line in (ours / "log.jsonl").read_text().splitlines()]
    rate_loop = np.mean([r["images_per_second"] for r in log])

    score_ours = None if args.no_score else score_latents_and_maps(np.load(ours / "z.npy"), data, rows,
                                                                   our_maps(ours))
    from cryofield.io import read_particles

    box = read_particles(star).box_size
    gflop = step_gflop_per_image(box)
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    peak = bf16_peak_gflops(device)
    print(f"cryofield train-vae: {box} px, {t_ours:.1f} s for {args.n} x {args.epochs} epochs = "
          f"{rate_ours:.1f} images/s (training loop alone {rate_loop:.1f} images/s), peak RSS {rss_ours:.0f} MB"
          f"{gpu_ours}")
    if score_ours:
        print(describe(score_ours))
    print(f"  matmul work {gflop:.2f} GFLOP per image -> {gflop * rate_loop:.0f} GFLOP/s in the loop; "
          f"bf16 matmul peak measured on {device} {peak:.0f} GFLOP/s: {100 * gflop * rate_loop / peak:.1f} % of peak",
          flush=True)
    peer = shutil.which(args.peer) or (args.peer if Path(args.peer).exists() else None)
    if not peer or args.no_peer:
        print("cryodrgn not found or not asked for: no comparison")
        return
    with GpuMemory() as gpu_peer:  # its training, and with scores its eval_vol too
        t_peer, rss_peer, score_peer = run_peer(peer, star, work / "cryodrgn", data, rows, args.epochs, arch,
                                                score=not args.no_score)
    rate_peer = args.n * args.epochs / t_peer
    rate_peer_loop = args.n / np.mean(peer_epoch_seconds(work / "cryodrgn" / "run"))
    print(f"cryodrgn train_vae: {t_peer:.1f} s = {rate_peer:.1f} images/s (its epochs alone, each with its full "
          f"encoder pass, {rate_peer_loop:.1f} images/s), peak RSS {rss_peer:.0f} MB{gpu_peer}")
    if score_peer:
        print(describe(score_peer))
    print(f"throughput ratio cryofield/cryodrgn: {rate_ours / rate_peer:.2f}x whole commands, "
          f"{rate_loop / rate_peer_loop:.2f}x epochs alone")


def memory(args) -> None:
    work = Path(args.workdir)
    small = simulate_accuracy_dataset(work / "data")
    big = simulate_accuracy_dataset(work / "data100k", n=100000)
    small_net = ["--dec-dim", "64", "-b", "64"]
    both = (("10,000", small), ("100,000", big))
    commands = [("train-vae --lazy", ["train-vae", "--lazy", "-n", "1", "--zdim", "8", "--enc-dim", "64", *small_net],
                 both),
                # the first epoch trains on random poses, the second searches every pose (online, in chunks of 256)
                ("abinit --lazy", ["abinit", "--lazy", "--epochs-search", "2", "--no-reset", *small_net], both),
                ("abinit, in memory", ["abinit", "--epochs-search", "2", "--no-reset", *small_net], both[1:])]
    for what, command, sizes in commands:
        for label, data in sizes:
            out = work / f"{command[0]}_{'lazy' if '--lazy' in command else 'memory'}_{label.replace(',', '')}"
            if out.exists():
                shutil.rmtree(out)
            seconds, rss = timed([CRYOFIELD, command[0], str(data / "particles.star"), "-o", str(out), *command[1:]],
                                 args.seconds)
            log = out / "log.jsonl"
            epochs = len(log.read_text().splitlines()) if log.is_file() else 0
            print(f"{what}, {label} particles: {seconds:.1f} s ({epochs} epoch(s) finished), peak RSS {rss:.0f} MB",
                  flush=True)


def homogeneous(args) -> None:
    import torch

    from cryofield.examples import ADK_CLOSED, example_path
    from cryofield.io import read_map
    from cryofield.metrics import fsc, resolution_at

    work = Path(args.workdir) / "homogeneous"
    data = work / "data"
    if not (data / "truth.npz").is_file():
        subprocess.run([CRYOFIELD, "simulate", *MOLMAP, "--pdb", str(example_path(ADK_CLOSED)), "--box", "64",
                        "--apix", "1.5", "-n", str(args.n), "--snr", "0.5", "--shift-px", "3", "-o", str(data)],
                       check=True)
    truth, apix = read_map(data / "truth_vols/vol_000.mrc")
    for name, cmd, output in (
            ("backproject", [CRYOFIELD, "backproject", str(data / "particles.star"), "-o", str(work / "bp")],
             work / "bp/volume.mrc"),
            ("train-nn", [CRYOFIELD, "train-nn", str(data / "particles.star"), "-o", str(work / "nn"), "-n",
                          str(args.epochs)], work / "nn/volume.mrc")):
        seconds, _ = timed(cmd)
        volume, _ = read_map(output)
        freqs, curve = fsc(torch.from_numpy(volume), torch.from_numpy(truth))
        auc = float(np.trapezoid(curve, freqs) / freqs[-1])
        crossing = apix / resolution_at(freqs, curve, 0.5)
        print(f"{name}: {seconds:.1f} s; FSC to truth: AUC {auc:.4f}, 0.5 at {crossing:.2f} A", flush=True)


def accuracy(args) -> None:
    work = Path(args.workdir) / "accuracy"
    work.mkdir(parents=True, exist_ok=True)
    data = Path(args.data) if args.data else simulate_accuracy_dataset(Path(args.workdir) / "data")
    rows = np.arange(args.n)
    star, ind = first_particles(data, args.n, work)
    arch = list(ARCH)
    for zdim in args.zdims:  # --ind on the full star file, so that `evaluate` finds each image's truth
        out = work / f"cryofield_z{zdim}"
        if out.exists():
            shutil.rmtree(out)
        arch[arch.index("--zdim") + 1] = str(zdim)
        seconds, _ = timed([CRYOFIELD, "train-vae", str(data / "particles.star"), "--ind", str(ind),
                            "-o", str(out), "-n", str(args.epochs)] + arch)
        scores = json.loads(subprocess.run([CRYOFIELD, "evaluate", str(out), "--truth", str(data), "--json"],
                                           check=True, capture_output=True, text=True).stdout)
        (out / "scores.json").write_text(json.dumps(scores, indent=2) + "\n")
        print(f"cryofield train-vae --zdim {zdim}, {args.n} images x {args.epochs} epochs: {seconds:.0f} s",
              flush=True)
        print("  " + json.dumps(scores), flush=True)
        if args.refine_z:
            z_refined = out / "z_refined.npy"
            seconds, _ = timed([CRYOFIELD, "eval-images", str(out), "--refine-z", str(args.refine_z),
                                "-o", str(z_refined)])
            scores = json.loads(subprocess.run([CRYOFIELD, "evaluate", str(out), "--truth", str(data), "--z",
                                                str(z_refined), "--json"], check=True, capture_output=True,
                                               text=True).stdout)
            (out / "scores_refined.json").write_text(json.dumps(scores, indent=2) + "\n")
            print(f"  eval-images --refine-z {args.refine_z}: {seconds:.0f} s; scored with those latents:", flush=True)
            print("  " + json.dumps(scores), flush=True)
    peer = shutil.which(args.peer) or (args.peer if Path(args.peer).exists() else None)
    if not peer:
        print("cryodrgn not found: no comparison")
        return
    seconds, _, score = run_peer(peer, star, work / "cryodrgn_z8", data, rows, args.epochs, ARCH)
    print(f"cryodrgn train_vae --zdim 8, {args.n} images x {args.epochs} epochs: {seconds:.0f} s", flush=True)
    print(describe(score), flush=True)


RECIPES = {  # the seed's section 3.7.1 recipes on adenylate kinase (closed), 10,000 images, 64^2, SNR 0.1
    "circular": ["--rotate", "A:122-159", "--axis", "A:121:CA,A:122:CA", "--circular", "--states", "100"],
    "discrete": ["--rotate", "A:122-159", "--axis", "A:121:CA,A:122:CA", "--angles", "-60", "60",
                 "--rotate2", "A:30-59", "--axis2", "A:29:CA,A:30:CA", "--angles2", "-60", "60",
                 "--random-configs", "10"],
}


def recipes(args) -> None:
    from cryofield.examples import ADK_CLOSED, example_path

    peer = shutil.which(args.peer) or (args.peer if Path(args.peer).exists() else None)
    for name in args.recipes:
        work = Path(args.workdir) / "recipes" / name
        data = work / "data"
        if (data / "truth.npz").is_file() and len(np.load(data / "truth.npz")["state"]) != args.n:
            shutil.rmtree(data)  # simulated for another --n
        if not (data / "truth.npz").is_file():
            subprocess.run([CRYOFIELD, "simulate", *MOLMAP, "--pdb", str(example_path(ADK_CLOSED))] + RECIPES[name] +
                           ["--box", "64", "--apix", "1.5", "-n", str(args.n), "--snr", "0.1", "--shift-px", "3",
                            "--seed", "0", "-o", str(data)], check=True, capture_output=True)
        rows = np.arange(args.n)
        ours = work / "cryofield_z8"
        if ours.exists():
            shutil.rmtree(ours)
        seconds, _ = timed([CRYOFIELD, "train-vae", str(data / "particles.star"), "-o", str(ours), "-n",
                            str(args.epochs)] + ARCH)
        print(f"{name}: cryofield train-vae --zdim 8, {args.n} images x {args.epochs} epochs: {seconds:.0f} s",
              flush=True)
        print(describe(score_latents_and_maps(np.load(ours / "z.npy"), data, rows, our_maps(ours))), flush=True)
        if not peer:
            print("cryodrgn not found: no comparison")
            continue
        seconds, _, score = run_peer(peer, data / "particles.star", work / "cryodrgn_z8", data, rows, args.epochs,
                                     ARCH)
        print(f"{name}: cryodrgn train_vae --zdim 8, {args.n} images x {args.epochs} epochs: {seconds:.0f} s",
              flush=True)
        print(describe(score), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["speed", "memory", "homogeneous", "accuracy", "recipes"])
    parser.add_argument("--workdir", default="/tmp/cryofield-bench-train")
    parser.add_argument("--data", help="a cryofield simulate folder to use")
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8, help="speed: images per step, both tools")
    parser.add_argument("--box", type=int, default=64,
                        help="speed without --data: image size of the simulated dataset (the same 96 A box)")
    parser.add_argument("--compile", help="speed: cryofield's --compile MODE")
    parser.add_argument("--no-score", action="store_true", help="speed: time only, no maps or scores")
    parser.add_argument("--no-peer", action="store_true", help="speed: cryofield alone")
    parser.add_argument("--cryofield-args", default="", help="speed: more train-vae options, e.g. '--no-cuda-graph'")
    parser.add_argument("--zdims", type=int, nargs="+", default=[1, 8], help="accuracy: latent dimensions")
    parser.add_argument("--refine-z", type=int, default=10,
                        help="accuracy: also score latents refined by eval-images --refine-z STEPS (0: no)")
    parser.add_argument("--recipes", nargs="+", choices=sorted(RECIPES), default=sorted(RECIPES),
                        help="recipes: which of the seed's datasets")
    parser.add_argument("--seconds", type=float, default=240, help="memory: stop each run after this long")
    parser.add_argument("--peer", default=os.environ.get("CRYODRGN", "/tmp/peer/bin/cryodrgn"))
    args = parser.parse_args()
    {"speed": speed, "memory": memory, "homogeneous": homogeneous, "accuracy": accuracy,
     "recipes": recipes}[args.what](args)


if __name__ == "__main__":
    main()
