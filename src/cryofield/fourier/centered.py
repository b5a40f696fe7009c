"""Centred Fourier and Hartley transforms, cropping and padding of centred spectra.

"Centred" means the origin sits at index ``D//2`` in real space and in frequency space
alike (the conventions of :mod:`cryofield.conventions`), for even and odd sizes. The
forward transforms are unnormalised and the inverses divide by the number of samples,
as ``torch.fft`` does by default.
"""

from __future__ import annotations

import torch


def _dims(ndim: int) -> tuple[int, ...]:
    return tuple(range(-ndim, 0))


def fft_center(x: torch.Tensor, ndim: int = 2) -> torch.Tensor:
    """Centred FFT over the last ``ndim`` axes.

    Parameters
    ----------
    x : Tensor, shape (..., D, D) or (..., D, D, D)
        Real or complex, origin at ``D//2``.
    ndim : {2, 3}

    Returns
    -------
    Tensor, complex, same shape
        Frequency ``k`` (cycles per box) at index ``k + D//2``.
    """
    dims = _dims(ndim)
    return torch.fft.fftshift(torch.fft.fftn(torch.fft.ifftshift(x, dim=dims), dim=dims), dim=dims)


def ifft_center(x: torch.Tensor, ndim: int = 2) -> torch.Tensor:
    """Inverse of :func:`fft_center` (complex output; take ``.real`` for real signals)."""
    dims = _dims(ndim)
    return torch.fft.fftshift(torch.fft.ifftn(torch.fft.ifftshift(x, dim=dims), dim=dims), dim=dims)


def ht_center(x: torch.Tensor, ndim: int = 2) -> torch.Tensor:
    """Centred discrete Hartley transform, ``Re(F) - Im(F)`` of :func:`fft_center`, real.

    Parameters
    ----------
    x : Tensor, shape (..., D, D) or (..., D, D, D), real
    ndim : {2, 3}

    Returns
    -------
    Tensor, real, same shape
    """
    f = fft_center(x, ndim)
    return f.real - f.imag


def iht_center(x: torch.Tensor, ndim: int = 2) -> torch.Tensor:
    """Inverse of :func:`ht_center`: the Hartley transform is its own inverse up to ``1/N``."""
    n = 1
    for size in x.shape[-ndim:]:
        n *= size
    return ht_center(x, ndim) / n


def crop_center(x: torch.Tensor, size: int, ndim: int = 2) -> torch.Tensor:
    """Keep the centred ``size`` window of the last ``ndim`` axes (origin ``D//2 -> size//2``).

    Parameters
    ----------
    x : Tensor, shape (..., D, D[, D])
    size : int
        ``size <= D``.
    ndim : {2, 3}

    Returns
    -------
    Tensor, shape (..., size, size[, size])
    """
    big = x.shape[-1]
    if not 0 < size <= big:
        raise ValueError(f"crop size {size} must be between 1 and {big}")
    start = big // 2 - size // 2
    index = (Ellipsis,) + (slice(start, start + size),) * ndim
    return x[index]


def pad_center(x: torch.Tensor, size: int, ndim: int = 2) -> torch.Tensor:
    """Zero-pad the last ``ndim`` axes to ``size``, keeping the origin at the centre.

    The inverse of :func:`crop_center`: ``crop_center(pad_center(x, D), d) == x``.

    Parameters
    ----------
    x : Tensor, shape (..., d, d[, d])
    size : int
        ``size >= d``.
    ndim : {2, 3}

    Returns
    -------
    Tensor, shape (..., size, size[, size])
    """
    small = x.shape[-1]
    if size < small:
        raise ValueError(f"pad size {size} is smaller than {small}")
    out = x.new_zeros(x.shape[:-ndim] + (size,) * ndim)
    start = size // 2 - small // 2
    out[(Ellipsis,) + (slice(start, start + small),) * ndim] = x
    return out


def reflect_center(x: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    """Mirror through the origin along ``dims``: index ``i -> 2 (D//2) - i`` (the origin stays put).

    On a centred transform this maps frequency ``k`` to ``-k`` (Friedel mates); on a map it
    inverts the hand. For even ``D`` the plane ``i = 0`` (frequency ``-D/2``, or the box
    edge) has no partner inside the box and stays in place.

    Parameters
    ----------
    x : Tensor
    dims : tuple of int
        Axes to mirror.

    Returns
    -------
    Tensor, same shape
    """
    flipped = torch.flip(x, dims)
    even = tuple(d for d in dims if x.shape[d] % 2 == 0)
    return torch.roll(flipped, (1,) * len(even), even) if even else flipped
