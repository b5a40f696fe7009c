"""Every command on a realistic dataset: wall time and peak memory (issue 24, item 2).

    python benchmarks/bench_scale.py [--n 20000] [--box 128] [--work DIR]

Simulates ``--n`` images of adenylate kinase along its closed -> open trajectory with the
realistic recipe (SNR 0.03 in a 40 px radius, 20 % junk of four kinds, 2 degree pose errors,
0.5 px shift errors, one micrograph per 100 particles with CTF rows from RELION's example STAR
file, float16 stacks), then runs the commands a user runs on it and prints a Markdown table:
command, N, box, wall time, peak RSS (GNU time). `train-vae` runs one epoch in memory and one
``--lazy`` (and ``--lazy`` on half the particles: its memory must not grow with N).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from bench_train import timed

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
EXAMPLES = REPO / "src" / "cryofield" / "examples"
CRYOFIELD = str(Path(sys.executable).parent / "cryofield")
ARCH = ["--zdim", "8", "--enc-dim", "256", "--enc-layers", "3", "--dec-dim", "256", "--dec-layers", "3"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--box", type=int, default=128)
    parser.add_argument("--work", type=Path)
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
        step("simulate (realistic recipe)", [
            "simulate", "--pdb", EXAMPLES / "1ake_closed.pdb", "--pdb", EXAMPLES / "4ake_open_chainA_aligned.pdb",
            "--states", "10", "--box", box, "--apix", "1.0", "-n", n, "--snr", "0.03", "--snr-radius", "40",
            "--shift-px", "4", "--junk", "0.2", "--pose-error", "2", "--shift-error", "0.5", "--micrographs",
            max(1, n // 100), "--float16", "--ctf-from", DATA / "relion/relion31.star", "-o", sim])
    step("info", ["info", star])
    (work / "half.txt").write_text("\n".join(map(str, range(0, n, 2))) + "\n")
    step("select (half, new stack)", ["select", star, "--ind", work / "half.txt", "-o", work / "half.mrcs"],
         note="writes N/2 images")
    step("downsample to 64 px", ["downsample", star, "-D", "64", "-o", work / "ds64.mrcs"])
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
    print("\n| command | N | box | wall time | peak RSS | note |\n|---|---|---|---|---|---|")
    for label, count, size, seconds, rss, note in rows:
        print(f"| `{label}` | {count:,} | {size} | {seconds:.1f} s | {rss:,.0f} MB | {note} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
