"""Shape-annotated array aliases used in signatures (documentation only; not enforced)."""

from __future__ import annotations

from typing import TypeAlias

import numpy as np
import numpy.typing as npt

FloatArray: TypeAlias = npt.NDArray[np.floating]
IntArray: TypeAlias = npt.NDArray[np.integer]
#: (N,) integer indices into a particle table
Indices: TypeAlias = npt.NDArray[np.int64]
