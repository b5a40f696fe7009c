"""Simulation and voxel backprojection benchmarks against cryoDRGN.

    python benchmarks/bench_recon.py [--workdir /tmp/cryofield-bench-recon] [--peer /tmp/peer/bin/cryodrgn]

1. `cryofield simulate` of 50,000 64^2 particles (target: under 2 minutes on 2 cores).
2. `cryofield backproject` and `cryodrgn backproject_voxel` on the same simulated 64^2
   (20,000 particles) and 128^2 (8,000 particles) datasets at SNR 0.5, timed under
   /usr/bin/time, with the FSC of each full map against the true map.
cryoDRGN reads the same star file through its own parse_pose_star/parse_ctf_star (not
timed). Prints a table; copy it into docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

CRYOFIELD = str(Path(sys.executable).with_name("cryofield"))
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def timed(cmd: list[str]) -> tuple[float, float]:
    start = time.perf_counter()
    result = subprocess.run(["/usr/bin/time", "-f", "MAXRSS %M"] + cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{result.stderr[-3000:]}")
    return seconds, int(re.findall(r"MAXRSS (\d+)", result.stderr)[-1]) / 1024


def fsc_against(path: Path, truth: Path) -> tuple[float, float]:
    """(FSC = 0.5 resolution in A, mean FSC up to Nyquist) of a map against the truth."""
    import torch

    from cryofield.io import read_map
    from cryofield.metrics import fsc, resolution_at

    a, apix = read_map(path)
    b, _ = read_map(truth)
    freqs, curve = fsc(torch.from_numpy(a), torch.from_numpy(b))
    return apix / resolution_at(freqs, curve, 0.5), float(curve[1:].mean())


def upsampled_hand(path: Path, size: int) -> None:
    """hand-vol (64^3, 1 A/px) Fourier-padded to size^3 (pixel size 64/size A)."""
    import torch

    from cryofield.fourier import fft_center, ifft_center, pad_center
    from cryofield.io import read_map, write_map

    vol, apix = read_map(DATA / "maps/hand-vol.mrc")
    big = ifft_center(pad_center(fft_center(torch.from_numpy(vol).double(), 3), size, 3), 3).real
    write_map(path, (big * (size / 64) ** 3).numpy(), apix * 64 / size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/cryofield-bench-recon"))
    parser.add_argument("--peer", default=os.environ.get("CRYODRGN", "/tmp/peer/bin/cryodrgn"))
    parser.add_argument("--sim-n", type=int, default=50000)
    args = parser.parse_args()
    work = args.workdir
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    peer = shutil.which(args.peer) or (args.peer if Path(args.peer).exists() else None)

    t, rss = timed([CRYOFIELD, "simulate", "--volume", str(DATA / "maps/hand-vol.mrc"), "-n", str(args.sim_n),
                    "--snr", "0.1", "--shift-px", "4", "-o", str(work / "sim50k")])
    print(f"simulate {args.sim_n} x 64^2: {t:.1f} s ({args.sim_n / t:.0f} images/s), peak RSS {rss:.0f} MB", flush=True)
    shutil.rmtree(work / "sim50k")

    upsampled_hand(work / "hand128.mrc", 128)
    for box, n, volume in [(64, 20000, DATA / "maps/hand-vol.mrc"), (128, 8000, work / "hand128.mrc")]:
        sim = work / f"sim{box}"
        subprocess.run([CRYOFIELD, "simulate", "--volume", str(volume), "-n", str(n), "--snr", "0.5",
                        "--shift-px", "3", "-o", str(sim)], check=True, capture_output=True)
        t_ours, rss_ours = timed([CRYOFIELD, "backproject", str(sim / "particles.star"), "-o", str(sim / "ours")])
        res_ours, mean_ours = fsc_against(sim / "ours/volume.mrc", volume)
        print(f"{box}^2 x {n}: cryofield backproject {t_ours:.1f} s ({n / t_ours:.0f} images/s), peak RSS "
              f"{rss_ours:.0f} MB; FSC 0.5 vs truth at {res_ours:.2f} A, mean FSC {mean_ours:.3f}", flush=True)
        if not peer:
            print("  cryodrgn not found: no ratio")
            continue
        subprocess.run([peer, "parse_pose_star", str(sim / "particles.star"), "-o", str(sim / "pose.pkl")],
                       check=True, capture_output=True)
        subprocess.run([peer, "parse_ctf_star", str(sim / "particles.star"), "-o", str(sim / "ctf.pkl")],
                       check=True, capture_output=True)
        t_peer, rss_peer = timed([peer, "backproject_voxel", str(sim / "particles.mrcs"), "--poses",
                                  str(sim / "pose.pkl"), "--ctf", str(sim / "ctf.pkl"), "-o", str(sim / "peer")])
        res_peer, mean_peer = fsc_against(sim / "peer/backproject.mrc", volume)
        print(f"{box}^2 x {n}: cryodrgn backproject_voxel {t_peer:.1f} s ({n / t_peer:.0f} images/s), peak RSS "
              f"{rss_peer:.0f} MB; FSC 0.5 vs truth at {res_peer:.2f} A, mean FSC {mean_peer:.3f}")
        print(f"  throughput ratio cryofield/cryodrgn: {t_peer / t_ours:.2f}x", flush=True)
        shutil.rmtree(sim)


if __name__ == "__main__":
    main()
