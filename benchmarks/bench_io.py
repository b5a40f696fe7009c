"""I/O benchmarks: `downsample` throughput and peak memory against cryoDRGN, and STAR read time.

    python benchmarks/bench_io.py [--n 20000] [--box 256] [--new-box 128] [--rows 1000000]
                                  [--workdir /tmp/cryofield-bench] [--peer /tmp/peer/bin/cryodrgn]

Each command runs under /usr/bin/time, so peak RSS is that of the command alone. The peer
(cryoDRGN 4.3.1, installed as DEVELOPERS.md says) is used only when present. The script
prints a table and the ratios; copy them into docs/benchmarks.md.
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

import numpy as np

HERE = Path(__file__).resolve().parent
CRYOFIELD = Path(sys.executable).with_name("cryofield")


def make_stack(path: Path, n: int, box: int, seed: int = 0) -> None:
    """A float32 stack of n smooth random images (written in chunks, a few hundred MB at a time)."""
    from cryofield.io import MrcStackWriter

    rng = np.random.default_rng(seed)
    block = rng.normal(size=(500, box, box)).astype(np.float32)
    with MrcStackWriter(path, (n, box, box), 1.5) as writer:
        for start in range(0, n, len(block)):
            writer.write(block[: min(len(block), n - start)] * (1 + start / n))


def make_star(path: Path, rows: int, stacks: int, seed: int = 0) -> None:
    """A RELION 3.1 star file with `rows` particles spread over `stacks` stack names."""
    rng = np.random.default_rng(seed)
    per = rows // stacks
    header = (
        "# version 30001\n\ndata_optics\n\nloop_\n_rlnOpticsGroup #1\n_rlnOpticsGroupName #2\n"
        "_rlnAmplitudeContrast #3\n_rlnSphericalAberration #4\n_rlnVoltage #5\n_rlnImagePixelSize #6\n"
        "_rlnImageSize #7\n_rlnImageDimensionality #8\n"
        "1 opticsGroup1 0.1 2.7 300.0 1.1 256 2\n2 opticsGroup2 0.1 2.7 300.0 1.12 256 2\n\n"
        "# version 30001\n\ndata_particles\n\nloop_\n"
    )
    columns = ["rlnCoordinateX", "rlnCoordinateY", "rlnImageName", "rlnMicrographName", "rlnDefocusU",
               "rlnDefocusV", "rlnDefocusAngle", "rlnCtfBfactor", "rlnCtfScalefactor", "rlnPhaseShift",
               "rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi", "rlnClassNumber", "rlnOpticsGroup",
               "rlnOriginXAngst", "rlnOriginYAngst", "rlnRandomSubset"]
    with open(path, "w") as fh:
        fh.write(header + "".join(f"_{c} #{i + 1}\n" for i, c in enumerate(columns)))
        chunk = 100_000
        for start in range(0, rows, chunk):
            idx = np.arange(start, min(start + chunk, rows))
            n = len(idx)
            f = rng.uniform
            cols = [
                np.char.mod("%.6f", f(0, 4096, n)), np.char.mod("%.6f", f(0, 4096, n)),
                np.char.add(np.char.mod("%06d@Extract/job007/Movies/stack_", idx % per + 1),
                            np.char.mod("%05d.mrcs", idx // per)),
                np.char.mod("Movies/mic_%05d.mrc", idx // per),
                np.char.mod("%.6f", f(5000, 30000, n)), np.char.mod("%.6f", f(5000, 30000, n)),
                np.char.mod("%.6f", f(-180, 180, n)), np.full(n, "0.000000"), np.full(n, "1.000000"),
                np.full(n, "0.000000"), np.char.mod("%.6f", f(-180, 180, n)), np.char.mod("%.6f", f(0, 180, n)),
                np.char.mod("%.6f", f(-180, 180, n)), np.full(n, "1"), np.char.mod("%d", 1 + idx % 2),
                np.char.mod("%.6f", f(-5, 5, n)), np.char.mod("%.6f", f(-5, 5, n)), np.char.mod("%d", 1 + idx % 2),
            ]
            fh.write("\n".join(" ".join(r) for r in zip(*cols, strict=True)) + "\n")


def timed(cmd: list[str]) -> tuple[float, float, str]:
    """Run cmd under /usr/bin/time; return (seconds, peak RSS in MB, stderr)."""
    start = time.perf_counter()
    result = subprocess.run(["/usr/bin/time", "-f", "MAXRSS %M"] + cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{result.stderr[-2000:]}")
    rss_kb = int(re.findall(r"MAXRSS (\d+)", result.stderr)[-1])
    return seconds, rss_kb / 1024, result.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--box", type=int, default=256)
    parser.add_argument("--new-box", type=int, default=128)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/cryofield-bench"))
    parser.add_argument("--peer", default=os.environ.get("CRYODRGN", "/tmp/peer/bin/cryodrgn"))
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    args = parser.parse_args()
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)

    stack = work / f"stack_{args.n}x{args.box}.mrcs"
    if not stack.exists():
        print(f"writing {stack} ({args.n * args.box**2 * 4 / 1e9:.1f} GB) ...", flush=True)
        make_stack(stack, args.n, args.box)
    subprocess.run(["cat", str(stack)], stdout=subprocess.DEVNULL, check=True)  # warm the page cache for both

    results = {}
    out = work / "cryofield_out.mrcs"
    t, rss, _ = timed([str(CRYOFIELD), "downsample", str(stack), "-D", str(args.new_box), "-o", str(out)])
    results["cryofield"] = (t, rss)
    print(f"cryofield downsample: {t:.1f} s, {args.n / t:.0f} images/s, peak RSS {rss:.0f} MB", flush=True)
    peer = shutil.which(args.peer) or (args.peer if Path(args.peer).exists() else None)
    if peer:
        peer_out = work / "cryodrgn_out.mrcs"
        t, rss, _ = timed([peer, "downsample", str(stack), "-D", str(args.new_box), "-o", str(peer_out)])
        results["cryodrgn"] = (t, rss)
        print(f"cryodrgn  downsample: {t:.1f} s, {args.n / t:.0f} images/s, peak RSS {rss:.0f} MB", flush=True)
        import mrcfile

        with mrcfile.mmap(out, permissive=True) as a, mrcfile.mmap(peer_out, permissive=True) as b:
            diff = float(np.abs(a.data[:50] - b.data[:50]).max() / np.abs(b.data[:50]).max())
        print(f"  throughput ratio cryofield/cryodrgn: {results['cryodrgn'][0] / results['cryofield'][0]:.2f}x; "
              f"peak RSS ratio: {results['cryofield'][1] / results['cryodrgn'][1]:.2f}; "
              f"max relative difference of outputs (first 50 images): {diff:.2e}")
        peer_out.unlink()
    else:
        print("cryodrgn not found: no ratio (install it as DEVELOPERS.md says)")
    out.unlink()
    out.with_suffix(".star").unlink(missing_ok=True)

    star = work / f"particles_{args.rows}.star"
    if not star.exists():
        print(f"writing {star} ...", flush=True)
        make_star(star, args.rows, stacks=max(1, args.rows // 1000))
    probe = ("import sys, time; t = time.perf_counter(); from cryofield.io import read_particles; "
             "table = read_particles(sys.argv[1]); table.ctf_array(); table.rotations; table.shifts_px; "
             "print(f'READ {time.perf_counter() - t:.2f} {table.n}')")
    t, rss, err = timed([sys.executable, "-c", probe, str(star)])
    result = subprocess.run([sys.executable, "-c", probe, str(star)], capture_output=True, text=True, check=True)
    seconds = float(result.stdout.split()[1])
    print(f"read_particles on {args.rows:,} rows: {seconds:.2f} s (import included), peak RSS {rss:.0f} MB")
    if not args.keep:
        stack.unlink()
        star.unlink()


if __name__ == "__main__":
    main()
