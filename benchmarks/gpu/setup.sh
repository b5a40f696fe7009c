# Sourced by the run*.sh scripts: output folders, the wheels of .gpu/whl, and launchers for both tools.
OUT=${OUT:-/tmp/gpuout}; W=${W:-/tmp/gw}
mkdir -p "$OUT" "$W/bin"
export PYTHONUNBUFFERED=1
PY=${PY:-python3}
nvidia-smi -L 2>/dev/null
if [ -d .gpu/whl ] && [ -z "${NO_WHEELS:-}" ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/whl/*.whl \
    && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH}
printf '#!/bin/sh\nexec %s -m cryofield "$@"\n' "$PY" > "$W/bin/cryofield"
printf '#!/bin/sh\nexec %s %s/benchmarks/gpu/peer_cli.py "$@"\n' "${PEER_PY:-$PY}" "$PWD" > "$W/bin/cryodrgn"
chmod +x "$W"/bin/*
export CRYOFIELD=$W/bin/cryofield
