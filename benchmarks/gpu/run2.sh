#!/bin/bash
# Second GPU run: step overhead (fused Adam, no per-step host syncs) and torch.compile, against cryodrgn.
set -u
N=${N:-10000}
source benchmarks/gpu/setup.sh
t0=$(date +%s)
[ -f "$W/data/truth.npz" ] || $CRYOFIELD simulate --pdb src/cryofield/examples/1ake_closed.pdb \
  --pdb src/cryofield/examples/4ake_open_chainA_aligned.pdb --states 50 --box 64 --apix 1.5 -n "$N" --snr 0.1 \
  --shift-px 3 --seed 0 -o "$W/data" 2>&1 | tail -1
bench() {  # name, then bench_train.py speed options
  local name=$1; shift
  echo "=== $name ($(( $(date +%s) - t0 )) s)"
  timeout "${LIMIT:-150}" $PY benchmarks/bench_train.py speed --data "$W/data" --n "$N" --epochs 2 --no-score \
    --workdir "$W/$name" --peer "$W/bin/cryodrgn" "$@" 2>&1 | grep -v "^\s*$" | tail -8 | tee "$OUT/$name.txt"
  $PY -c "import json,sys; [print('  epoch', r['epoch'] + 1, r['images_per_second'], 'images/s') for r in map(json.loads, open(sys.argv[1]))]" "$W/$name/cryofield/log.jsonl" 2>/dev/null | tee -a "$OUT/$name.txt"
}
bench b8_peer --batch-size 8
bench b8_compile --batch-size 8 --no-peer --compile default
bench b8_graphs --batch-size 8 --no-peer --compile reduce-overhead
bench b64_compile --batch-size 64 --no-peer --compile default
echo "total: $(( $(date +%s) - t0 )) s"
