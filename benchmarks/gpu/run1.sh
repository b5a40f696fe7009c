#!/bin/bash
# GPU timings of cryofield against cryodrgn, and a smoke test of the GPU paths. From the repo root.
set -u
N=${N:-10000}; EPOCHS=${EPOCHS:-2}
source benchmarks/gpu/setup.sh
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
t0=$(date +%s)
[ -f "$W/data/truth.npz" ] || $CRYOFIELD simulate --pdb src/cryofield/examples/1ake_closed.pdb \
  --pdb src/cryofield/examples/4ake_open_chainA_aligned.pdb --states 50 --box 64 --apix 1.5 -n "$N" --snr 0.1 \
  --shift-px 3 --seed 0 -o "$W/data" 2>&1 | tail -1
echo "simulate: $(( $(date +%s) - t0 )) s"
speed() {  # bench_train.py speed at batch size $1, scored, against cryoDRGN
  echo "=== speed, batch $1"
  $PY benchmarks/bench_train.py speed --data "$W/data" --n "$N" --epochs "$EPOCHS" --batch-size "$1" \
    --workdir "$W/b$1" --peer "$W/bin/cryodrgn" 2>&1 | grep -v "^\s*$" | tee "$OUT/speed_b$1.txt" | tail -12
  cp "$W/b$1/cryofield/log.jsonl" "$OUT/log_b$1.jsonl" 2>/dev/null
}
speed 8
echo "=== smoke tests of the GPU paths"
S=$W/smoke; rm -rf "$S"; mkdir -p "$S"
seq 0 $(( (N < 1000 ? N : 1000) - 1 )) > "$S/ind.txt"
P=("$W/data/particles.star" --ind "$S/ind.txt")
run() { echo "--- $*"; "$@" > "$S/last.log" 2>&1 && tail -2 "$S/last.log" || { echo "FAILED"; tail -25 "$S/last.log"; }; }
run $CRYOFIELD train-nn "${P[@]}" -o "$S/nn" -n 1
run $CRYOFIELD train-vae "${P[@]}" -o "$S/vae" -n 1 --zdim 2 --lazy
run $CRYOFIELD train-vae "${P[@]}" -o "$S/vae2" -n 1 --zdim 2 --no-amp --refine-poses
run $CRYOFIELD train-vae "${P[@]}" -o "$S/vae" -n 2 --zdim 2 --lazy --resume
run $CRYOFIELD eval-vol "$S/vae" --z 0 0 -o "$S/vols"
run $CRYOFIELD eval-images "$S/vae" --refine-z 2 -o "$S/zr.npy"
run $CRYOFIELD evaluate "$S/vae" --truth "$W/data"
speed 64
echo "total: $(( $(date +%s) - t0 )) s"
