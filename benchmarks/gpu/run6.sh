#!/bin/bash
# Sixth GPU run, for issues 24 and 25, in two parts that each fit one device command:
#   PART=speed (about 3 minutes): `bench_train.py speed` at 128 px (N128 images, default 2,000) and 256 px
#     (N256, default 1,000), 2 epochs each: train-vae against cryoDRGN's train_vae, images per second and
#     each tool's peak GPU memory;
#   PART=race (about 8 minutes): `bench_abinit.py race` on adenylate kinase (RACE_BOX 64 px and RACE_N
#     10,000 images by default; 128 and 20,000 for the large race): cryofield's default abinit for WINDOW
#     seconds, then `cryodrgn abinit` for 3.2 times cryofield's time to the target (at most PEER_WINDOW),
#     both scored (rotation error, FSC AUC against backproject with the true poses).
# From the repo root, with the wheels of .gpu/whl (README.md). Everything printed goes to $OUT too.
set -u
source benchmarks/gpu/setup.sh
t0=$(date +%s)
stamp() { echo "=== $* ($(( $(date +%s) - t0 )) s)"; }
case "${PART:-speed}" in
  speed)
    for size in "128 ${N128:-2000}" "256 ${N256:-1000}"; do
      set -- $size
      stamp "speed at $1 px, $2 images, 2 epochs"
      timeout "${SPEED_LIMIT:-150}" $PY benchmarks/bench_train.py speed --box "$1" --n "$2" --epochs 2 --no-score \
        --workdir "$W/speed$1" --peer "$W/bin/cryodrgn" 2>&1 | grep -v "^\s*$" | tee "$OUT/speed_$1.txt"
      cp "$W/speed$1/cryofield/log.jsonl" "$OUT/speed_$1_log.jsonl" 2>/dev/null
    done ;;
  race)
    box=${RACE_BOX:-64}; n=${RACE_N:-10000}
    stamp "race, $n adenylate kinase images at $box px"
    $PY benchmarks/bench_abinit.py race --data adk --box "$box" --n "$n" --schedules table \
      --window "${WINDOW:-150}" --peer-window "${PEER_WINDOW:-330}" --peer-window-factor 3.2 \
      --workdir "$W/race" --peer "$W/bin/cryodrgn" 2>&1 | tee "$OUT/race.txt"
    name=adk_$n; [ "$box" = 64 ] || name=${name}_${box}px
    cp "$W/race/race_table_$name/log.jsonl" "$OUT/race_ours_log.jsonl" 2>/dev/null
    cp "$W/race/race_cryodrgn_$name/run.out" "$OUT/race_peer_run.out" 2>/dev/null ;;
  *) echo "PART is speed or race"; exit 2 ;;
esac
stamp "done"
