import subprocess
import sys

import mrcfile
import numpy as np
import pytest

from cryofield.errors import InputError
from cryofield.io import MrcStack, MrcStackWriter, read_particles


@pytest.mark.parametrize("mode,dtype", [(0, np.int8), (1, np.int16), (2, np.float32), (6, np.uint16),
                                        (12, np.float16)])
def test_modes_read_as_float32(tmp_path, rng, mode, dtype):
    data = rng.integers(0, 100, (7, 10, 10)).astype(dtype)
    path = tmp_path / "s.mrcs"
    with mrcfile.new(path, data=data) as mrc:
        mrc.set_image_stack()
        mrc.voxel_size = 2.5
    assert int(mrcfile.open(path, header_only=True).header.mode) == mode
    stack = MrcStack.open(path)
    assert stack.shape == (7, 10, 10) and stack.pixel_size_angstrom == 2.5
    out = stack.read([5, 1, 1])
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, data[[5, 1, 1]].astype(np.float32))


@pytest.mark.parametrize("box", [31, 32])
def test_writer_header_and_subset_reads(tmp_path, rng, box):
    images = rng.normal(size=(25, box, box)).astype(np.float32)
    path = tmp_path / "s.mrcs"
    with MrcStackWriter(path, images.shape, 1.7) as writer:
        writer.write(images[:10])
        writer.write(images[10:])
    with mrcfile.open(path, permissive=False) as mrc:  # strict: a valid MRC2014 file
        np.testing.assert_array_equal(mrc.data, images)
        assert mrc.is_image_stack()
        assert np.isclose(mrc.voxel_size.x, 1.7)
        assert np.isclose(mrc.header.dmean, images.mean(), atol=1e-5)
        assert np.isclose(mrc.header.rms, images.std(), rtol=1e-4)
        assert mrc.header.dmin == images.min() and mrc.header.dmax == images.max()
    stack = MrcStack.open(path)
    np.testing.assert_array_equal(stack.read(np.array([24, 0, 3])), images[[24, 0, 3]])
    np.testing.assert_array_equal(stack.read(slice(2, 9)), images[2:9])
    np.testing.assert_array_equal(stack.read(), images)


def test_single_image_file(tmp_path):
    path = tmp_path / "one.mrc"
    with mrcfile.new(path, data=np.ones((8, 8), np.float32)) as mrc:
        mrc.voxel_size = 3.0
    table = read_particles(path)
    assert table.n == 1 and table.box_size == 8 and table.pixel_size_angstrom[0] == 3.0


def test_index_past_end(tmp_path, write_stack):
    stack = MrcStack.open(write_stack(tmp_path / "s.mrcs", np.zeros((3, 4, 4))))
    with pytest.raises(InputError, match="image 4 requested, but the stack holds 3"):
        stack.read([0, 3])


def test_non_finite_pixels_are_named(tmp_path, write_stack):
    images = np.zeros((4, 6, 6), np.float32)
    images[2, 1, 1] = np.nan
    stack = MrcStack.open(write_stack(tmp_path / "s.mrcs", images))
    stack.read([0, 1, 3])  # fine: the bad image is not read
    with pytest.raises(InputError, match="image 3 has non-finite pixels"):
        stack.read()


def test_truncated_file(tmp_path, write_stack):
    path = write_stack(tmp_path / "s.mrcs", np.zeros((10, 16, 16)))
    data = path.read_bytes()
    path.write_bytes(data[:-100])
    with pytest.raises(InputError, match="truncated"):
        MrcStack.open(path)
    path.write_bytes(data[:500])
    with pytest.raises(InputError, match="truncated"):
        MrcStack.open(path)


def test_corrupt_header(tmp_path, write_stack):
    path = write_stack(tmp_path / "s.mrcs", np.zeros((2, 16, 16)))
    raw = bytearray(path.read_bytes())
    raw[12:16] = np.int32(99).tobytes()  # mode 99
    path.write_bytes(bytes(raw))
    with pytest.raises(InputError, match="s.mrcs"):
        MrcStack.open(path)
    raw[12:16] = np.int32(2).tobytes()
    raw[0:4] = np.int32(-5).tobytes()  # nx < 1
    path.write_bytes(bytes(raw))
    with pytest.raises(InputError, match="s.mrcs"):
        MrcStack.open(path)


def test_reads_only_what_it_is_asked(tmp_path):
    """Reading 3 images of a 131 MB stack keeps the process's peak memory far below the file size."""
    path = tmp_path / "big.mrcs"
    n, box = 2000, 128
    with MrcStackWriter(path, (n, box, box), 1.0) as writer:
        for _ in range(n // 200):
            writer.write(np.ones((200, box, box), np.float32))
    # VmHWM (this process's peak RSS) rather than ru_maxrss, which a child inherits from pytest
    probe = (
        "import re, sys, numpy as np\n"
        "from cryofield.io import MrcStack\n"
        "def peak():\n"
        "    return int(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1))\n"
        "before = peak()\n"
        "out = MrcStack.open(sys.argv[1]).read(np.array(sys.argv[2:], dtype=int))\n"
        "print((peak() - before) / 1024)\n"
    )
    few = subprocess.run([sys.executable, "-c", probe, str(path), "0", "1999", "1000"],
                         capture_output=True, text=True, check=True)
    every = subprocess.run([sys.executable, "-c", probe, str(path)] + [str(i) for i in range(0, n, 2)],
                           capture_output=True, text=True, check=True)
    assert float(few.stdout) < 10  # MB
    assert float(every.stdout) > 60  # the probe does see a real read of half the stack
