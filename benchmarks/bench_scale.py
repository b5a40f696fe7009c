"""Every command on a realistic dataset: wall time and peak memory (issue 24, item 2).

    python benchmarks/bench_scale.py [--n 20000] [--box 128] [--work DIR]
    python benchmarks/bench_scale.py --n 100000 --box 128 --window 420 [--peer PATH]
    python benchmarks/bench_scale.py --n 20000 --box 256 --window 420 --finished 2000

Simulates ``--n`` images of adenylate kinase along its closed -> open trajectory with the
realistic recipe (a 128 A box at ``--box`` px, so 1 A/px at 128 px and 0.5 A/px at 256 px;
SNR 0.03 in a radius of 40 A, 20 % junk of four kinds, 2 degree pose errors, shifts up to 4 A
and 0.5 px shift errors, one micrograph per 100 particles with CTF rows from RELION's example
STAR file, float16 stacks), then runs the commands a user runs on it and prints a Markdown table:
command, N, box, wall time, peak RSS (GNU time). `train-vae` runs one epoch in memory and one
``--lazy`` (and ``--lazy`` on half the particles: its memory must not grow with N).

With ``--window S`` (for sizes where an epoch takes hours here), each training run is stopped
after ``S`` seconds (SIGINT) and reported with its peak RSS (loading included) and its images
per second over the steps it took; `cryodrgn train_vae` (in memory and ``--lazy``, same
networks) and `cryodrgn downsample` run beside the same rows when the peer is installed. The
commands that need a finished run (analyze, landscape, ...) are left out in this mode, unless
``--finished K``: then `train-nn` and `abinit` are run in the window too, a `train-vae` epoch on
the first ``K`` particles makes a finished run, and `eval-images` (every particle, ``--lazy``),
`eval-vol`, `analyze`, `landscape`, `filter`, `report` and `backproject` (every
particle) run on it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_train import timed

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
EXAMPLES = REPO / "src" / "cryofield" / "examples"
CRYOFIELD = str(Path(sys.executable).parent / "cryofield")
ARCH = ["--zdim", "8", "--enc-dim", "256", "--enc-layers", "3", "--dec-dim", "256", "--dec-layers", "3"]
BOTH = [*ARCH, "--pe-type", "gaussian", "--domain", "fourier", "-b", "8", "--lr", "1e-4"]  # the same run in either tool
NN = [*ARCH[6:], *BOTH[len(ARCH):]]  # train-nn: the same decoder, no encoder


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--box", type=int, default=128)
    parser.add_argument("--work", type=Path)
    parser.add_argument("--window", type=float, help="stop each training run after this many seconds")
    parser.add_argument("--finished", type=int, metavar="K",
                        help="with --window: train one epoch on K particles and run the other commands on it")
    parser.add_argument("--peer", default=os.environ.get("CRYODRGN", "/tmp/peer/bin/cryodrgn"))
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_scale_"))
    work.mkdir(parents=True, exist_ok=True)
    n, box = args.n, args.box
    rows = []

    def step(label: str, cmd: list, count: int = n, size: int = box, note: str = "") -> float:
        seconds, rss = timed([CRYOFIELD, *map(str, cmd)])
        rows.append((label, count, size, seconds, rss, note))
        print(f"{label}: {seconds:.1f} s, {rss:.0f} MB {note}", flush=True)
        return seconds

    sim, star = work / "sim", work / "sim" / "particles.star"
    if not star.is_file():
        apix = 128 / box  # the same 128 A box at every size
        step("simulate (realistic recipe)", [
            "simulate", "--pdb", EXAMPLES / "1ake_closed.pdb", "--pdb", EXAMPLES / "4ake_open_chainA_aligned.pdb",
            "--states", "10", "--box", box, "--apix", apix, "-n", n, "--snr", "0.03", "--snr-radius", 40 / apix,
            "--shift-px", 4 / apix, "--junk", "0.2", "--pose-error", "2", "--shift-error", "0.5", "--micrographs",
            max(1, n // 100), "--float16", "--ctf-from", DATA / "relion/relion31.star", "-o", sim])
    step("info", ["info", star])
    (work / "half.txt").write_text("\n".join(map(str, range(0, n, 2))) + "\n")
    step("select (half, new stack)", ["select", star, "--ind", work / "half.txt", "-o", work / "half.mrcs"],
         note="writes N/2 images")
    step("downsample to 64 px", ["downsample", star, "-D", "64", "-o", work / "ds64.mrcs"])
    if args.window:
        peer = shutil.which(args.peer) or (args.peer if Path(args.peer).exists() else None)
        windowed_trainings(work, star, n, box, args.window, peer, rows, others=bool(args.finished))
        if args.finished:
            finished_run_commands(work, star, n, box, args.finished, step)
        print_table(rows)
        return 0
    trainings = (("train-vae, 1 epoch, in memory", [], star, n, "vae"),
                 ("train-vae --lazy, 1 epoch", ["--lazy"], star, n, "vae_lazy"),
                 ("train-vae --lazy, 1 epoch, half the particles", ["--lazy"], work / "half.star", n // 2,
                  "vae_lazy_half"))
    for label, extra, source, count, name in trainings:
        shutil.rmtree(work / name, ignore_errors=True)
        seconds = step(label, ["train-vae", source, "-o", work / name, "-n", "1", *ARCH, *extra], count=count)
        record = json.loads((work / name / "log.jsonl").read_text().splitlines()[-1])
        rows[-1] = rows[-1][:5] + (f"{record['images_per_second']:.0f} images/s in the epoch",)
        print(f"  {record['images_per_second']:.0f} images/s ({seconds:.0f} s with start-up)")
    run = work / "vae"
    step("analyze (k-means 20, UMAP, 40 maps)", ["analyze", run, "--ksample", "20"])
    step("eval-vol (20 maps)", ["eval-vol", run, "--z-file", run / "analysis/kmeans20/centers.txt", "-o",
                                 work / "maps"])
    step("landscape (sketch 200 maps at 64 px)", ["landscape", run, "--sketch", "200", "-o", work / "landscape"])
    step("filter (2 clusters)", ["filter", run, "--clusters", "0", "1", "-o", work / "kept.txt"])
    step("backproject (all images)", ["backproject", star, "-o", work / "bp"])
    step("report", ["report", run, "-o", work / "report.html"])
    print_table(rows)
    return 0


def print_table(rows: list) -> None:
    print("\n| command | N | box | wall time | peak RSS | note |\n|---|---|---|---|---|---|")
    for label, count, size, seconds, rss, note in rows:
        print(f"| `{label}` | {count:,} | {size} | {seconds:.1f} s | {rss:,.0f} MB | {note} |")


def windowed(cmd: list, seconds: float, log: Path | None = None, pattern: str = "") -> tuple[float, float, list]:
    """Run ``cmd`` for at most ``seconds`` (then SIGINT): (wall seconds, peak RSS in MB, progress samples).

    The samples are ``(seconds since start, count)`` for each new last match of ``pattern``'s
    group in the file ``log``, polled every second (for a tool that logs progress without times).
    """
    err = Path(tempfile.mkstemp(suffix=".err")[1])
    start = time.perf_counter()
    with open(err, "w") as fh:
        proc = subprocess.Popen(["/usr/bin/time", "-f", "MAXRSS %M", "timeout", "--signal=INT", str(seconds),
                                 *map(str, cmd)], stdout=subprocess.DEVNULL, stderr=fh)
        samples = []
        while proc.poll() is None:
            time.sleep(1)
            if log is not None and log.is_file():
                counts = re.findall(pattern, log.read_text(errors="replace"))
                if counts and (not samples or samples[-1][1] != int(counts[-1])):
                    samples.append((time.perf_counter() - start, int(counts[-1])))
    wall = time.perf_counter() - start
    text = err.read_text(errors="replace")
    err.unlink()
    if proc.returncode not in (0, 124, 130, 1) or "MAXRSS" not in text:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed:\n{text[-3000:]}")
    return wall, int(re.findall(r"MAXRSS (\d+)", text)[-1]) / 1024, samples


def ours_in_window(run: Path) -> str:
    """Images per second of a cryofield run stopped by SIGINT, from its train.log (start to stop)."""
    lines = (run / "train.log").read_text().splitlines()
    stamp = [datetime.datetime.fromisoformat(line.split()[0]) for line in lines]
    stopped = re.search(r"after step (\d+) of epoch 1", lines[-1])
    if not stopped:
        return "stopped before its first step"
    batch = json.loads((run / "config.json").read_text())["batch_size"]
    steps = int(stopped.group(1))
    return (f"{steps * batch / (stamp[-1] - stamp[0]).total_seconds():.1f} images/s over its first {steps * batch:,} "
            "images")


def abinit_in_window(run: Path) -> str:
    """How far an ab initio run stopped by SIGINT got: its last line of train.log."""
    lines = (run / "train.log").read_text().splitlines()
    return lines[-1].split(maxsplit=1)[-1][:120] if lines else "no log"


def finished_run_commands(work: Path, star: Path, n: int, box: int, k: int, step) -> None:
    """One train-vae epoch on the first ``k`` particles, then the commands that need a finished run."""
    run, first = work / f"vae_first{k}", work / f"first{k}.txt"
    first.write_text("\n".join(map(str, range(k))) + "\n")
    shutil.rmtree(run, ignore_errors=True)
    step("train-vae, 1 epoch", ["train-vae", star, "--ind", first, "-o", run, "-n", "1", *ARCH], count=k)
    step("eval-images (every particle, --lazy)", ["eval-images", run, "--particles", star, "-o", work / "z_all.npy",
                                                    "--lazy"])
    step("analyze (k-means 20, UMAP, 40 maps)", ["analyze", run, "--ksample", "20"], count=k)
    step("eval-vol (20 maps)", ["eval-vol", run, "--z-file", run / "analysis/kmeans20/centers.txt", "-o",
                                 work / "maps"], count=k)
    step("landscape (sketch 100 maps at 128 px)", ["landscape", run, "--sketch", "100", "--downsample", "128",
                                                   "-o", work / "landscape"], count=k)
    step("filter (2 clusters)", ["filter", run, "--clusters", "0", "1", "-o", work / "kept.txt"], count=k)
    step("report", ["report", run, "-o", work / "report.html"], count=k)
    step("backproject (every particle)", ["backproject", star, "-o", work / "bp"])


def peer_in_window(samples: list) -> str:
    """Images per second of the peer between its first and last progress line in the window."""
    if len(samples) < 2:
        return f"{samples[-1][1] if samples else 0:,} images logged: too few for a rate"
    (t0, c0), (t1, c1) = samples[0], samples[-1]
    return f"{(c1 - c0) / (t1 - t0):.1f} images/s between its progress lines ({c1:,} images)"


def windowed_trainings(work: Path, star: Path, n: int, box: int, window: float, peer: str | None,
                       rows: list, others: bool = False) -> None:
    """train-vae in memory and lazy (``others``: train-nn and abinit too), each stopped after ``window`` s.

    The peer's train_vae and downsample beside them.
    """
    runs = [("train-vae", "in memory", []), ("train-vae", "--lazy", ["--lazy"])]
    if others:
        runs += [("train-nn", "in memory", []), ("abinit", "in memory", []), ("abinit", "--lazy", ["--lazy"])]
    for command, label, extra in runs:
        out = work / f"{command}_window{extra[0] if extra else ''}"
        shutil.rmtree(out, ignore_errors=True)
        options = {"train-vae": ["-n", "1", *BOTH], "train-nn": ["-n", "1", *NN], "abinit": []}[command]
        wall, rss, _ = windowed([CRYOFIELD, command, star, "-o", out, *options, *extra], window)
        note = ours_in_window(out) if command != "abinit" else abinit_in_window(out)
        rows.append((f"cryofield {command}, {label}", n, box, wall, rss, f"stopped at {window:.0f} s; {note}"))
        print(rows[-1], flush=True)
    if peer is None:
        return
    theirs = work / "cryodrgn"
    theirs.mkdir(exist_ok=True)
    for what in ("pose", "ctf"):
        if not (theirs / f"{what}.pkl").is_file():
            subprocess.run([peer, f"parse_{what}_star", str(star), "-o", str(theirs / f"{what}.pkl")], check=True,
                           capture_output=True)
    for label, extra in (("in memory", []), ("--lazy", ["--lazy"])):
        out = theirs / f"run{extra[0] if extra else ''}"
        shutil.rmtree(out, ignore_errors=True)
        wall, rss, samples = windowed(
            [peer, "train_vae", star, "--datadir", star.parent, "--poses", theirs / "pose.pkl", "--ctf",
             theirs / "ctf.pkl", "-n", "1", "-o", out, "--no-analysis", "--log-interval", "200", *BOTH, *extra],
            window,
            out / "run.log", r"\[Train Epoch: 1/1\] \[(\d+)/\d+ particles\]")
        rows.append((f"cryodrgn train_vae, {label}", n, box, wall, rss, f"stopped at {window:.0f} s; "
                     + peer_in_window(samples)))
        print(rows[-1], flush=True)
    out = theirs / "ds64.mrcs"
    wall, rss, _ = windowed([peer, "downsample", star, "-D", "64", "-o", out, "--datadir", star.parent], 3600)
    rows.append(("cryodrgn downsample -D 64", n, box, wall, rss, ""))
    print(rows[-1], flush=True)


if __name__ == "__main__":
    sys.exit(main())
