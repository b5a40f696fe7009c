#!/bin/bash
# Fifth GPU run: every step replayed as one CUDA graph (the default on a GPU) against ordinary steps and
# cryoDRGN, at batch 8 and 64; the GPU tests; train-cryofold with and without graphs. From the repo root.
# SCORE= (empty) also scores the batch-8 maps and latents, after EPOCHS (default 2);
# SKIP_TESTS, SKIP_B64 and SKIP_CRYOFOLD skip parts.
set -u
N=${N:-10000}
source benchmarks/gpu/setup.sh
t0=$(date +%s)
[ -n "${SKIP_TESTS:-}" ] || $PY -m pytest -q -p no:cacheprovider tests/train/test_training.py -k cuda 2>&1 | tail -4 | tee "$OUT/tests.txt"
[ -f "$W/data/truth.npz" ] || $CRYOFIELD simulate --pdb src/cryofield/examples/1ake_closed.pdb \
  --pdb src/cryofield/examples/4ake_open_chainA_aligned.pdb --states 50 --box 64 --apix 1.5 -n "$N" --snr 0.1 \
  --shift-px 3 --seed 0 -o "$W/data" 2>&1 | tail -1
echo "simulate done: $(( $(date +%s) - t0 )) s"
bench() {  # name, then bench_train.py speed options
  local name=$1; shift
  echo "=== $name ($(( $(date +%s) - t0 )) s)"
  timeout "${LIMIT:-300}" $PY benchmarks/bench_train.py speed --data "$W/data" --n "$N" --epochs "$E" $SCORE \
    --workdir "$W/$name" --peer "$W/bin/cryodrgn" "$@" 2>&1 | grep -v "^\s*$" | tail -14 | tee "$OUT/$name.txt"
  $PY -c "import json,sys; [print('  epoch', r['epoch'] + 1, r['images_per_second'], 'images/s') for r in map(json.loads, open(sys.argv[1]))]" "$W/$name/cryofield/log.jsonl" 2>/dev/null | tee -a "$OUT/$name.txt"
}
SCORE=${SCORE---no-score}; E=${EPOCHS:-2}  # the batch-8 comparison: scored with SCORE= (empty), EPOCHS epochs
bench b8 --batch-size 8
SCORE=--no-score; E=2
bench b8_plain --batch-size 8 --no-peer --cryofield-args=--no-cuda-graph
[ -n "${SKIP_B64:-}" ] || bench b64 --batch-size 64
[ -n "${SKIP_CRYOFOLD:-}" ] && exit 0
echo "=== train-cryofold --zdim 1, one epoch, with and without graphs ($(( $(date +%s) - t0 )) s)"
for flag in "" "--no-cuda-graph"; do
  rm -rf "$W/cf"
  $CRYOFIELD train-cryofold "$W/data/particles.star" --pdb src/cryofield/examples/4ake_open_chainA_aligned.pdb \
    -o "$W/cf" --zdim 1 -n 1 --warmup-epochs 0 $flag > "$W/cf.log" 2>&1 || tail -20 "$W/cf.log"
  echo "  ${flag:-graphs}: $(grep -o '[0-9]* images/s' "$W/cf.log" | tail -1)" | tee -a "$OUT/cryofold.txt"
done
echo "total: $(( $(date +%s) - t0 )) s"
