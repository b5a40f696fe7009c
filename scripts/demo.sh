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

echo; echo "== 7. adenylate kinase opening: 20 states from closed (1AKE) to open (4AKE), CTF, shifts, SNR 0.5"
closed=$(.venv/bin/python -c 'from cryofield.examples import example_path, ADK_CLOSED; print(example_path(ADK_CLOSED))')
opened=$(.venv/bin/python -c 'from cryofield.examples import example_path, ADK_OPEN; print(example_path(ADK_OPEN))')
$cf simulate --pdb "$closed" --pdb "$opened" --states 20 --box 48 --apix 1.75 --resolution 4 -n 6000 \
    --snr 0.5 --shift-px 2 -o "$out/adk"
echo; echo "== 8. a VAE with a 1-D latent learns the motion from the images (poses and CTF known)"
$cf train-vae "$out/adk/particles.star" -o "$out/adk_vae" --zdim 1 -n "${DEMO_EPOCHS:-15}" -b 32 --lr 3e-4 \
    --enc-dim 128 --dec-dim 128
.venv/bin/python - "$out" <<'PY'
import sys
import numpy as np
out = sys.argv[1]
z = np.load(f"{out}/adk_vae/z.npy")[:, 0]
np.savetxt(f"{out}/adk_vae/z_path.txt", np.percentile(z, [5, 27.5, 50, 72.5, 95])[:, None])
PY
$cf eval-vol "$out/adk_vae" --z-file "$out/adk_vae/z_path.txt" -o "$out/adk_maps"
$cf evaluate "$out/adk_vae" --truth "$out/adk" --images 50
.venv/bin/python - "$out" <<'PY'
import sys
import numpy as np
from cryofield.io import read_map
out = sys.argv[1]
closed, opened = (read_map(f"{out}/adk/truth_vols/vol_{i:03d}.mrc")[0].ravel() for i in (0, 19))
print("maps along the latent axis (5th to 95th percentile of z), correlation with the true closed and open maps:")
for i in range(5):
    m = read_map(f"{out}/adk_maps/vol_{i:03d}.mrc")[0].ravel()
    print(f"  {out}/adk_maps/vol_{i:03d}.mrc  closed {np.corrcoef(m, closed)[0, 1]:.3f}  open {np.corrcoef(m, opened)[0, 1]:.3f}")
PY
echo; echo "== 9. analyse the VAE's latent space (6 clusters, maps at their centres) and write its report"
$cf analyze "$out/adk_vae" --ksample 6
$cf report "$out/adk_vae"
echo; echo "demo done: outputs in $out/ (FSC plot: $out/state_a_recon/fsc.png; adenylate kinase maps: $out/adk_maps/;"
echo "report: $out/adk_vae/report.html). Explore the VAE run in the browser, with maps computed where you click:"
echo "  $cf explore $out/adk_vae"
