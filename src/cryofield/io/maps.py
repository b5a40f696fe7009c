"""Density maps (MRC/CCP4 volumes) in cryofield's ``[z, y, x]`` order."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from cryofield.io.mrc import MrcStack, write_mrc


def read_map(path: str | os.PathLike) -> tuple[np.ndarray, float | None]:
    """Read a volume, reordered to ``[z, y, x]`` whatever the header's axis order.

    Parameters
    ----------
    path : str or PathLike
        ``.mrc``/``.map`` file of any real mode (float16 included).

    Returns
    -------
    volume : ndarray, shape (D, D, D) or (nz, ny, nx), float32
    pixel_size_angstrom : float or None
        From the header; ``None`` where it says 0.

    Raises
    ------
    InputError
        Unreadable, truncated or non-finite map.
    """
    import mrcfile

    stack = MrcStack.open(path)  # checks the header, size and mode
    data = stack.read()  # (sections, rows, columns), float32, finite
    with mrcfile.open(path, header_only=True, permissive=True) as mrc:
        axes = (int(mrc.header.mapc), int(mrc.header.mapr), int(mrc.header.maps))
    if sorted(axes) != [1, 2, 3]:
        axes = (1, 2, 3)  # absent or corrupt: the usual order
    # file axis 2 (columns) is map axis axes[0], 1 (rows) is axes[1], 0 (sections) is axes[2];
    # we want array axes ordered z (3), y (2), x (1)
    file_axis_of = {axes[0]: 2, axes[1]: 1, axes[2]: 0}
    volume = np.ascontiguousarray(data.transpose(file_axis_of[3], file_axis_of[2], file_axis_of[1]))
    return volume, stack.pixel_size_angstrom


def write_map(path: str | os.PathLike, volume: np.ndarray, pixel_size_angstrom: float) -> None:
    """Write a ``[z, y, x]`` volume as a float32 MRC map with its pixel size in the header."""
    volume = np.asarray(volume)
    if volume.ndim != 3:
        raise ValueError(f"a map is 3D, got shape {volume.shape}")
    write_mrc(Path(path), volume, pixel_size_angstrom, is_stack=False)

