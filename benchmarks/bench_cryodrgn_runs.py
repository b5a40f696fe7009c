"""cryoDRGN runs opened by cryofield (issue 24, item 6): the same maps from the same weights.

    python benchmarks/bench_cryodrgn_runs.py [--peer /tmp/peer/bin/cryodrgn] [--n 1000] [--epochs 3]

Simulates ``--n`` images of the hand map in ``shared/data`` (64 px, SNR 0.1, CTF), trains
`cryodrgn train_vae` on them (zdim 8, 256x3 encoder and decoder), then for 8 of its latents
compares `cryodrgn eval_vol` with `cryofield eval-vol` of the same run directory (relative
difference, correlation, and the same after removing the three Nyquist terms cryoDRGN keeps
at |k| = D/2), and times `cryodrgn analyze` against `cryofield analyze` of the run. The
peer is called through its command line only.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import mrcfile
import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"


def sh(*args, **kwargs) -> float:
    """Run a command; its wall time in seconds."""
    start = time.perf_counter()
    subprocess.run([str(a) for a in args], check=True, capture_output=True, **kwargs)
    return time.perf_counter() - start


def without_nyquist_axes(volume: np.ndarray) -> np.ndarray:
    """``volume`` with its transform's terms at -D/2 on the three axes removed (cryoDRGN keeps them)."""
    f = np.fft.fftshift(np.fft.fftn(np.fft.ifftshift(volume)))
    c = volume.shape[0] // 2
    for at in ((0, c, c), (c, 0, c), (c, c, 0)):
        f[at] = 0
    return np.fft.fftshift(np.fft.ifftn(np.fft.ifftshift(f))).real


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peer", default="/tmp/peer/bin/cryodrgn")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="work here and keep the files")
    args = parser.parse_args()
    peer = shutil.which(args.peer) or (args.peer if Path(args.peer).exists() else None)
    if peer is None:
        print("cryodrgn not found: nothing to compare")
        return 0
    cryofield = [sys.executable, "-m", "cryofield"]
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench_drgn_"))
    work.mkdir(parents=True, exist_ok=True)
    sh(*cryofield, "simulate", "--volume", DATA / "maps/hand-vol.mrc", "-n", args.n, "--snr", "0.1", "--shift-px",
       "2", "-o", work / "sim")
    with mrcfile.open(DATA / "maps/hand-vol.mrc", header_only=True) as mrc:
        apix, box = float(mrc.voxel_size.x), int(mrc.header.nx)
    sh(peer, "parse_pose_star", work / "sim/particles.star", "-o", work / "pose.pkl", "-D", box)
    sh(peer, "parse_ctf_star", work / "sim/particles.star", "-o", work / "ctf.pkl", "-D", box, "--Apix", apix)
    run = work / "drgn"
    seconds = sh(peer, "train_vae", work / "sim/particles.star", "--poses", work / "pose.pkl", "--ctf",
                 work / "ctf.pkl", "--zdim", "8", "-n", args.epochs, "--enc-dim", "256", "--enc-layers", "3",
                 "--dec-dim", "256", "--dec-layers", "3", "-o", run, "--datadir", work / "sim")
    print(f"cryodrgn train_vae: {args.n} images, {box} px, {args.epochs} epochs in {seconds:.0f} s")
    import pickle

    with open(run / "z.pkl", "rb") as fh:  # the benchmark reads the peer's own output; the project never does this
        everything = pickle.load(fh)
    z = everything[:: max(1, len(everything) // 8)][:8]
    np.savetxt(work / "z8.txt", z)
    t_ours = sh(*cryofield, "eval-vol", run, "--z-file", work / "z8.txt", "-o", work / "ours")
    rows = []
    t_peer = 0.0
    for i, latent in enumerate(z):
        t_peer += sh(peer, "eval_vol", run / "weights.pkl", "-c", run / "config.yaml", "-z", *latent, "-o",
                     work / f"peer_{i}.mrc", "--Apix", apix)
        theirs = mrcfile.read(work / f"peer_{i}.mrc").astype(np.float64)
        with mrcfile.open(work / f"ours/vol_{i:03d}.mrc") as mrc:
            ours, our_apix = mrc.data.astype(np.float64), float(mrc.voxel_size.x)
        stripped = without_nyquist_axes(theirs)
        rows.append((np.linalg.norm(ours - theirs) / np.linalg.norm(theirs), np.corrcoef(ours.ravel(),
                     theirs.ravel())[0, 1], np.linalg.norm(ours - stripped) / np.linalg.norm(stripped), our_apix))
    rel, corr, rel_stripped, our_apix = (np.array(c) for c in zip(*rows))
    print(f"maps of 8 latents, cryofield eval-vol against cryodrgn eval_vol of the same run ({box}^3):")
    print(f"  relative difference {rel.min():.2e} .. {rel.max():.2e}, correlation >= {corr.min():.6f}")
    print(f"  without the 3 Nyquist terms at |k| = D/2 cryoDRGN keeps: relative difference "
          f"{rel_stripped.min():.2e} .. {rel_stripped.max():.2e}")
    print(f"  pixel size in the header: {our_apix[0]} A (data {apix} A)")
    print(f"  time for the 8 maps: cryofield {t_ours:.1f} s (one command), cryodrgn {t_peer:.1f} s (8 commands)")
    t_analyze_ours = sh(*cryofield, "analyze", run, "--ksample", "20", "-o", work / "ours_analysis")
    t_analyze_peer = sh(peer, "analyze", run, str(args.epochs), "--ksample", "20", "-o", work / "peer_analysis")
    print(f"analyze (k-means 20, PCA, UMAP, maps): cryofield {t_analyze_ours:.1f} s, cryodrgn "
          f"{t_analyze_peer:.1f} s ({t_analyze_peer / t_analyze_ours:.1f}x)")
    if args.keep is None:
        shutil.rmtree(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
