import numpy as np
import pytest

from cryofield.cli.main import main
from cryofield.io import read_map
from cryofield.metrics import flip_hand


def test_fsc_command(data, tmp_path, capsys):
    hand = str(data / "maps/hand-vol.mrc")
    assert main(["fsc", hand, hand, "--plot", str(tmp_path / "f.png"), "-o", str(tmp_path / "f.txt")]) == 0
    assert "FSC 0.5 at 2.00 A, FSC 0.143 at 2.00 A" in capsys.readouterr().out
    assert np.loadtxt(tmp_path / "f.txt").shape == (33, 2) and (tmp_path / "f.png").stat().st_size > 1000
    assert main(["fsc", hand, hand, "--mask", "auto", "--dilate", "4", "--soft-edge", "3"]) == 0
    assert "(masked)" in capsys.readouterr().out
    assert main(["fsc", hand, str(data / "maps/EMD-3197.map")]) == 2
    assert "EMD-3197.map: map is (20, 20, 20), the first is (64, 64, 64)" in capsys.readouterr().err


def test_mask_sharpen_flip_hand(data, tmp_path, capsys):
    hand = data / "maps/hand-vol.mrc"
    volume, apix = read_map(hand)
    assert main(["mask", str(hand), "--dilate", "4", "--soft-edge", "3", "-o", str(tmp_path / "m.mrc")]) == 0
    mask, mask_apix = read_map(tmp_path / "m.mrc")
    assert mask_apix == apix and mask.max() == 1 and mask.min() == 0
    assert main(["sharpen", str(hand), "--bfactor", "-40", "--lowpass", "4", "-o", str(tmp_path / "s.mrc")]) == 0
    assert main(["sharpen", str(hand), "--fit-low", "8", "-o", str(tmp_path / "g.mrc")]) == 0
    assert "minus the Guinier estimate" in capsys.readouterr().out
    assert main(["flip-hand", str(hand), "-o", str(tmp_path / "f.mrc")]) == 0
    np.testing.assert_array_equal(read_map(tmp_path / "f.mrc")[0], flip_hand(volume))
    assert main(["flip-hand", str(hand), "-o", str(hand)]) == 2
    assert "overwrite an input" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["mask", "sharpen", "flip-hand"])
def test_map_commands_refuse_stacks_of_other_shapes(data, tmp_path, command, capsys):
    assert main([command, str(data / "maps/spike-vol.mrc"), "-o", str(tmp_path / "x.mrc")]) == 2
    assert "a cube is needed" in capsys.readouterr().err
    assert not (tmp_path / "x.mrc").exists()
