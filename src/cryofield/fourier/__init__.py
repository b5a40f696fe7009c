"""Fourier-space tools: lattices, cropping and padding, transforms (numpy and torch)."""

from cryofield.fourier.transforms import downsample_images, rfft_frequencies

__all__ = ["downsample_images", "rfft_frequencies"]
