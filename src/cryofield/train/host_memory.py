"""Keep the C allocator from handing a training step's memory back to the kernel between steps.

glibc's ``malloc`` serves a block of more than 32 MiB (at most: its threshold starts at 128 KiB and
only grows that far) with its own ``mmap`` and unmaps it on ``free``. A training step at 128 px
allocates and frees tens of such blocks (a batch of 8 images is 51,400 points: 26 MB per bf16
activation of width 256, 80 MB for the fp32 encoding), so every step maps fresh pages and the
kernel zeroes each on first touch. Measured on a 2-core Xeon (docs/benchmarks.md): a bf16
``relu(linear(h) + h)`` of that shape took 32 ms with the default thresholds and 8.4 ms with
these; `train-vae` at 128 px went from 39 to 47 images/s, its system time from 7.1 to 1.2 s,
for 250-500 MB more peak memory (freed blocks stay in the heap for the next step).

At 256 px a step frees more than 1 GiB at the top of the heap (the fp32 phases of the
positional encoding alone are 316 MB for 8 images), which a trim threshold of 256 MiB or 1 GiB
handed back to the kernel every step: 600 images of `train-vae` on a 2-core Xeon spent 33-42 s
of 85-97 s in the kernel (6.9-7.9 images/s). With the largest threshold ``mallopt`` takes
(2 GiB) the kernel time was 3 s and the speed 8.3-8.9 images/s, at the same peak memory.

A lazily read dataset hands its buffers' freed memory back before each read
(:func:`cryofield.data.release_freed_memory`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

# mallopt(3) parameters (glibc's malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD_BYTES = 1 << 30  # blocks up to 1 GiB come from the heap and are reused
TRIM_THRESHOLD_BYTES = 2**31 - 1  # free memory kept at the top of the heap before it is returned (int's most)

_tuned = False


def _libc():
    name = ctypes.util.find_library("c")
    return None if name is None else ctypes.CDLL(name)


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds for this process (once; a no-op elsewhere).

    Leaves the allocator alone where the user set ``MALLOC_MMAP_THRESHOLD_`` or
    ``MALLOC_TRIM_THRESHOLD_`` (glibc's own environment settings), and where the C library
    has no ``mallopt`` (macOS, musl's returns 0).

    Returns
    -------
    bool
        Whether the thresholds are now this module's (True again on later calls).
    """
    global _tuned
    if _tuned:
        return True
    if any(name in os.environ for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")):
        return False
    try:
        mallopt = _libc().mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _tuned = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
    return _tuned

