"""Fourier-space tools: centred FFT/Hartley transforms, crop/pad, lattices, masks, shells, interpolation.

All in torch, batched over leading axes.
"""

from cryofield.fourier.centered import (
                                        crop_center,
                                        fft_center,
                                        ht_center,
                                        ifft_center,
                                        iht_center,
                                        pad_center,
                                        reflect_center,
)
from cryofield.fourier.lattice import (
                                        ball_mask,
                                        centered_coords,
                                        lattice,
                                        radial_sum,
                                        radius,
                                        sample_trilinear,
                                        shell_index,
                                        soft_ball_mask,
)
from cryofield.fourier.transforms import downsample_images, rfft_frequencies

__all__ = [
    "ball_mask", "centered_coords", "crop_center", "downsample_images", "fft_center", "ht_center",
    "ifft_center", "iht_center", "lattice", "pad_center", "radial_sum", "radius", "reflect_center", "rfft_frequencies",
    "sample_trilinear", "shell_index", "soft_ball_mask",
]
