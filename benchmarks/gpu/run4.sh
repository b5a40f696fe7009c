#!/bin/bash
# A whole `cryofield abinit` with the default schedule (30 + reset + 30 + 30 epochs) on a GPU, scored:
# bench_abinit.py abinit on N (default 4,000) hand images. From the repo root; needs .gpu/ as run3.sh.
set -u
N=${N:-4000}
source benchmarks/gpu/setup.sh
export HAND_MAP=$PWD/.gpu/hand-vol.mrc
timeout "${LIMIT:-100000}" $PY benchmarks/bench_abinit.py abinit --n "$N" --workdir "$W/a" 2>&1 | tee "$OUT/abinit.txt"
cp "$W/a/abinit/log.jsonl" "$OUT/abinit_log.jsonl" 2>/dev/null
cp "$W/a/abinit/poses/"*.png "$OUT/" 2>/dev/null
tail -3 "$W/a/abinit.log"
