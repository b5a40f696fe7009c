#!/bin/bash
# Ab initio on a GPU: bench_abinit.py search (pose search against cryodrgn abinit_homo_old on
# pretrained models) and a short `cryofield abinit` run. From the repo root; needs
# .gpu/hand-vol.mrc (a copy of ../shared/data/maps/hand-vol.mrc) and the wheels of run1.sh.
set -u
source benchmarks/gpu/setup.sh
export HAND_MAP=$PWD/.gpu/hand-vol.mrc
t0=$(date +%s)
echo "=== search: 1,000 images on models pretrained 10 epochs on 10,000"
$PY benchmarks/bench_abinit.py search --n 10000 --n-search 1000 --pretrain-epochs 10 --workdir "$W/s" \
  --peer "$W/bin/cryodrgn" 2>&1 | tee "$OUT/search.txt" | tail -8
cp "$W/s/cryodrgn/search.log" "$OUT/peer_search.log" 2>/dev/null
echo "search: $(( $(date +%s) - t0 )) s"
echo "=== abinit smoke: 2,000 images, 3 + 1 + 2 epochs, search every 2"
seq 0 1999 > "$W/ind.txt"
$CRYOFIELD select "$W/s/hand_10000/particles.star" --ind "$W/ind.txt" -o "$W/truth2000.star" > /dev/null
$CRYOFIELD abinit "$W/s/hand_10000/particles.star" --ind "$W/ind.txt" -o "$W/ab" --epochs-search 3 \
  --epochs-fixed 1 --epochs-refine 2 --search-every 2 > "$W/ab.log" 2>&1 && grep -v "img/s" "$W/ab.log" | tail -8 \
  || { echo FAILED; tail -30 "$W/ab.log"; }
cp "$W/ab/log.jsonl" "$OUT/abinit_log.jsonl" 2>/dev/null
$CRYOFIELD pose-error "$W/ab/poses.star" "$W/truth2000.star" 2>&1 | tail -3 || true
echo "total: $(( $(date +%s) - t0 )) s"
