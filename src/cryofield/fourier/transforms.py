"""Frequency lattices and Fourier cropping of image batches."""

from __future__ import annotations

import torch


def rfft_frequencies(ny: int, nx: int, *, dtype: torch.dtype = torch.float32,
                     device: torch.device | str | None = None) -> torch.Tensor:
    """Frequencies of the ``torch.fft.rfft2`` lattice of an ``ny x nx`` image.

    Parameters
    ----------
    ny, nx : int
        Image size in pixels.

    Returns
    -------
    Tensor, shape (ny, nx // 2 + 1, 2)
        ``(kx, ky)`` in cycles per pixel, in ``[-0.5, 0.5]``, in the (unshifted) order of
        the rfft output.
    """
    ky = torch.fft.fftfreq(ny, dtype=dtype, device=device)
    kx = torch.fft.rfftfreq(nx, dtype=dtype, device=device)
    grid_y, grid_x = torch.meshgrid(ky, kx, indexing="ij")
    return torch.stack([grid_x, grid_y], dim=-1)


def downsample_images(images: torch.Tensor, size: int) -> torch.Tensor:
    """Downsample square images by cropping their Fourier transform.

    Keeps the frequencies ``-size//2 .. (size-1)//2`` of each axis (the centred
    ``size x size`` window) and scales so that pixel values, and hence the image mean, are
    preserved. The origin stays put: pixel ``D//2`` of the input and pixel ``d//2`` of the
    output are the same point, for even and odd sizes alike, as the conventions require.
    Exact for content band-limited below the new Nyquist frequency.

    Parameters
    ----------
    images : Tensor, shape (..., D, D), real
    size : int
        New box size ``d <= D``, pixels.

    Returns
    -------
    Tensor, shape (..., d, d)
        Same dtype as ``images`` (computed in at least float32). The pixel size grows by
        ``D / d``.
    """
    big = images.shape[-1]
    if images.shape[-2] != big:
        raise ValueError(f"images must be square, got {tuple(images.shape[-2:])}")
    if not 0 < size <= big:
        raise ValueError(f"new size {size} must be between 1 and the box size {big}")
    if size == big:
        return images.clone()
    work = images if images.dtype in (torch.float32, torch.float64) else images.float()
    spectrum = torch.fft.rfft2(work)
    n_pos, n_neg = (size - 1) // 2 + 1, size // 2  # rows for k >= 0 and k < 0
    rows = torch.cat([spectrum[..., :n_pos, : size // 2 + 1], spectrum[..., big - n_neg:, : size // 2 + 1]], dim=-2)
    # The FFT's origin is index 0, ours is D//2 (and d//2 after): the phase ramp that moves
    # one onto the other is 1 when D and d are both even, and a small complex factor otherwise.
    shift = (big // 2) / big - (size // 2) / size
    if shift:
        ky = torch.fft.fftfreq(size, 1 / size, dtype=work.dtype, device=work.device)
        kx = torch.fft.rfftfreq(size, 1 / size, dtype=work.dtype, device=work.device)
        rows = rows * torch.polar(torch.ones_like(ky), 2 * torch.pi * ky * shift)[:, None] \
            * torch.polar(torch.ones_like(kx), 2 * torch.pi * kx * shift)
    out = torch.fft.irfft2(rows, s=(size, size))
    return out.mul_((size / big) ** 2).to(images.dtype)
