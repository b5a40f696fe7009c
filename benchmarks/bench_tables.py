"""Per-particle tables in memory against in mapped files (issue 25, item 2): memory held and step time.

    .venv/bin/python benchmarks/bench_tables.py --n 1000000 --zdim 8 --steps 2000

Builds ab initio's tables for N particles the way a run does (a pose table, a variational latent
table, ``SparseAdam`` for both; ``cryofield.nn``), then steps random batches of 8 rows with
made-up gradients, once per storage, each in a fresh process (``--table-storage memory`` and
``disk``, as ``cryofield.train.tables`` places them). Prints the process's anonymous and
file-backed resident memory (``/proc/self/status``: ``RssAnon``, ``RssFile``) after the tables
are made and after the steps (each after ``malloc_trim``, as a lazy run before each read), and
the time per step.
"""

import argparse
import json
import subprocess
import sys
import time


def resident() -> dict:
    """``RssAnon`` and ``RssFile`` of this process, MB."""
    fields = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("RssAnon", "RssFile"):
                fields[key] = int(value.split()[0]) / 1024
    return fields


def one(n: int, zdim: int, steps: int, storage: str) -> dict:
    """Tables of ``n`` particles stepped ``steps`` times, in ``storage``; memory and seconds per step."""
    import torch

    from cryofield.data import release_freed_memory
    from cryofield.nn import LatentTable, PoseTable
    from cryofield.train.tables import MappedTables

    torch.manual_seed(0)
    warm = torch.nn.Embedding(1, 1, sparse=True)  # the optimiser's first step imports more of torch: not the tables
    warm(torch.zeros(1, dtype=torch.long)).sum().backward()
    torch.optim.SparseAdam(warm.parameters()).step()
    release_freed_memory()
    start = resident()
    tables = {"encoder": LatentTable(n, zdim, variational=True), "poses": PoseTable(torch.eye(3).expand(n, 3, 3))}
    optimizer = torch.optim.SparseAdam([{"params": list(t.parameters())} for t in tables.values()], lr=1e-3)
    if storage == "disk":
        mapped = MappedTables()
        mapped.map_tables(tables)
        mapped.map_moments(optimizer)
    release_freed_memory()  # as a lazy run does before each read: what is held, not what the heap kept
    made = resident()
    generator = torch.Generator().manual_seed(1)
    t0 = time.perf_counter()
    for _ in range(steps):
        rows = torch.randint(0, n, (8,), generator=generator)
        optimizer.zero_grad(set_to_none=True)
        mean, logvar = tables["encoder"](rows)
        rotations, shifts = tables["poses"](rows)
        (mean.square().sum() + logvar.sum() + rotations.sum() + shifts.square().sum()).backward()
        optimizer.step()
    seconds = (time.perf_counter() - t0) / steps
    release_freed_memory()
    return {"storage": storage, "n": n, "before": start, "made": made, "stepped": resident(),
            "ms_per_step": 1000 * seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--zdim", type=int, default=8)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--storage", choices=["memory", "disk"], help="one storage in this process (internal)")
    args = parser.parse_args()
    if args.storage:
        print(json.dumps(one(args.n, args.zdim, args.steps, args.storage)))
        return
    print(f"{args.n:,} particles, zdim {args.zdim} (variational latent table + pose table, SparseAdam), "
          f"{args.steps} steps of 8 rows")
    print("| storage | anonymous / file-backed RSS, tables made (MB) | after the steps (MB) | ms per step |")
    print("|---|---|---|---|")
    for storage in ("memory", "disk"):
        out = subprocess.run([sys.executable, __file__, "--n", str(args.n), "--zdim", str(args.zdim), "--steps",
                              str(args.steps), "--storage", storage], check=True, capture_output=True, text=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        grown = {k: r["made"][k] - r["before"][k] for k in ("RssAnon", "RssFile")}
        after = {k: r["stepped"][k] - r["before"][k] for k in ("RssAnon", "RssFile")}
        print(f"| {storage} | {grown['RssAnon']:.0f} / {grown['RssFile']:.0f} | {after['RssAnon']:.0f} / "
              f"{after['RssFile']:.0f} | {r['ms_per_step']:.2f} |")


if __name__ == "__main__":
    main()
