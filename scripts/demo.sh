#!/usr/bin/env bash
# The demo behind `make demo`: I/O, simulation and voxel reconstruction on a built-in example.
set -euo pipefail
out=${1:-demo_output}
cf=.venv/bin/cryofield
rm -rf "$out"
mkdir -p "$out"

echo "== 1. a toy dataset: 2000 particles of a two-state molecule, 96 px, CTF, shifts and noise"
.venv/bin/python -m cryofield.simulate.toy "$out/toy" --n 2000 --box 96 --apix 1.5 --snr 1
echo; echo "== 2. what is in it"
$cf info "$out/toy/particles.star"
echo; echo "== 3. downsample to 64 px (writes a .star with the new pixel size)"
$cf downsample "$out/toy/particles.star" -D 64 -o "$out/particles.64.mrcs"
echo; echo "== 4. phase-flip and invert the downsampled particles"
$cf phase-flip "$out/particles.64.star" -o "$out/particles.64.flipped.mrcs"
$cf invert "$out/particles.64.flipped.star" -o "$out/particles.64.flipped.inverted.mrcs"
echo; echo "== 5. select state A and export it for RELION (.star) and as images + .star"
$cf select "$out/particles.64.star" --ind "$out/toy/state_a.txt" -o "$out/state_a.star"
$cf select "$out/particles.64.star" --ind "$out/toy/state_a.txt" -o "$out/state_a_images.mrcs"
echo; echo "== 6. backproject state A: map, half maps, FSC; then compare with the true map"
$cf backproject "$out/state_a.star" -o "$out/state_a_recon"
.venv/bin/python - "$out" <<'PY'
import sys
import torch
from cryofield.fourier import crop_center, fft_center, ifft_center
from cryofield.io import read_map
from cryofield.metrics import fsc, resolution_at

out = sys.argv[1]
truth, apix = read_map(f"{out}/toy/truth_vols/vol_000.mrc")
small = ifft_center(crop_center(fft_center(torch.from_numpy(truth).double(), 3), 64, 3), 3).real * (64 / 96) ** 3
recon, recon_apix = read_map(f"{out}/state_a_recon/volume.mrc")
freqs, curve = fsc(torch.from_numpy(recon), small)
print(f"map vs truth (both at {recon_apix:.2f} A/px): FSC 0.5 at {recon_apix / resolution_at(freqs, curve, 0.5):.2f} A")
PY
$cf fsc "$out/state_a_recon/half_a.mrc" "$out/state_a_recon/half_b.mrc" --mask auto --plot "$out/state_a_recon/fsc_masked.png"
echo; echo "demo done: outputs in $out/ (look at $out/state_a_recon/fsc.png)"
