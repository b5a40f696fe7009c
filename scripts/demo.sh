#!/usr/bin/env bash
# The demo behind `make demo`: the particle I/O pipeline on a built-in toy dataset.
set -euo pipefail
out=${1:-demo_output}
cf=.venv/bin/cryofield
rm -rf "$out"
mkdir -p "$out"

echo "== 1. a toy dataset: 1000 particles of a two-state molecule, 96 px, CTF and noise"
.venv/bin/python -m cryofield.simulate.toy "$out/toy" --n 1000 --box 96
echo; echo "== 2. what is in it"
$cf info "$out/toy/particles.star"
echo; echo "== 3. downsample to 48 px (writes a .star with the new pixel size)"
$cf downsample "$out/toy/particles.star" -D 48 -o "$out/particles.48.mrcs"
echo; echo "== 4. phase-flip and invert the downsampled particles"
$cf phase-flip "$out/particles.48.star" -o "$out/particles.48.flipped.mrcs"
$cf invert "$out/particles.48.flipped.star" -o "$out/particles.48.flipped.inverted.mrcs"
echo; echo "== 5. select state A and export it for RELION (.star) and as images + .star"
$cf select "$out/particles.48.star" --ind "$out/toy/state_a.txt" -o "$out/state_a.star"
$cf select "$out/particles.48.star" --ind "$out/toy/state_a.txt" -o "$out/state_a_images.mrcs"
$cf info "$out/state_a.star"
echo; echo "demo done: outputs in $out/"
