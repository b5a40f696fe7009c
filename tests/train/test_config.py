"""The typed configs: one --resume policy for every method, options derived from the settings."""

import dataclasses
import json

import pytest

from cryofield.cli.main import build_parser, main
from cryofield.errors import InputError
from cryofield.simulate.toy import make_toy_dataset
from cryofield.train import (
    FIXED,
    KEPT,
    MAY_CHANGE,
    RUNTIME,
    AbinitConfig,
    CryofoldConfig,
    TrainConfig,
    VaeConfig,
    load_config,
)


def test_resumed_applies_each_policy(tmp_path):
    saved = VaeConfig(particles="p.star", outdir=str(tmp_path), zdim=2, epochs=5, device="cuda:1", box=64,
                      checkpoint=2)
    resumed = saved.resumed({"epochs": 9, "box": 128, "zdim": 2})
    assert resumed.epochs == 9  # MAY_CHANGE: as asked
    assert resumed.box == 64  # KEPT: the run's, whatever is asked
    assert resumed.device == "auto" and resumed.checkpoint == 5  # RUNTIME: not taken from the run
    assert saved.resumed({}).epochs == 5  # not asked: the run's own
    with pytest.raises(InputError, match="--zdim 3 differs from the run's 2"):
        saved.resumed({"zdim": 3})
    with pytest.raises(InputError, match="--no-amp True differs from the run's False"):
        saved.resumed({"amp": False})
    with pytest.raises(InputError, match="--zdim 3 differs from the run's 2; --batch-size 4 differs from the run's 8"):
        saved.resumed({"zdim": 3, "batch_size": 4})  # every difference named at once


def test_every_setting_has_a_policy_and_runtime_ones_a_default():
    for config in (TrainConfig, VaeConfig, AbinitConfig, CryofoldConfig):
        for f in dataclasses.fields(config):
            assert f.metadata.get("resume") in (FIXED, MAY_CHANGE, RUNTIME, KEPT), (config.__name__, f.name)
            if f.metadata["resume"] == RUNTIME:
                assert f.default is not dataclasses.MISSING


def test_resume_checks_every_recorded_input(tmp_path):
    ctf = tmp_path / "ctf.pkl"
    ctf.write_bytes(b"one")
    saved = TrainConfig(particles=str(tmp_path / "p.star"), outdir=str(tmp_path), ctf=str(ctf)).with_versions()
    saved.check_inputs()
    ctf.write_bytes(b"two")
    with pytest.raises(InputError, match="changed since the run started"):
        saved.check_inputs()


@pytest.mark.parametrize("command, config", [("train-nn", TrainConfig), ("train-vae", VaeConfig),
                                             ("abinit", AbinitConfig), ("train-cryofold", CryofoldConfig)])
def test_each_option_is_its_settings_declaration(command, config):
    """A trainer's option has the setting's name, default and help: it was made from the field.

    The input options (IN, --datadir, --poses, --ctf, --apix), shared with every command that
    reads particles, are declared once in ``cli._common.add_input_arguments``.
    """
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    options = {a.dest: a for a in sub._actions}
    declared = 0
    for f in dataclasses.fields(config):
        if f.name not in options or f.name in ("particles", "poses", "ctf", "datadir", "apix"):
            continue
        declared += 1
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if default is not dataclasses.MISSING and not options[f.name].required:
            assert options[f.name].default == default, f.name
        assert options[f.name].help == f.metadata["help"], f.name
    assert declared == {"train-nn": 29, "train-vae": 38, "abinit": 53, "train-cryofold": 33}[command]


def test_abinit_resume_refuses_another_schedule(tmp_path, capsys):
    toy = make_toy_dataset(tmp_path / "toy", n=40, box=16, apix=5.0, snr=20, seed=2)["star"]
    out = tmp_path / "run"
    small = ["--dec-dim", "16", "--dec-layers", "1", "-b", "8", "--kmin", "4", "--kmax", "6", "--base-level", "1",
             "--rounds", "1", "--n-shifts", "3", "--epochs-search", "2", "--no-reset"]
    assert main(["abinit", str(toy), "-o", str(out), *small]) == 0
    assert isinstance(load_config(out), AbinitConfig) and load_config(out).schedule == "search"  # by --no-reset
    saved = (out / "config.json").read_text()
    capsys.readouterr()
    assert main(["abinit", str(toy), "-o", str(out), "--resume", "--kmax", "8"]) == 2
    assert "--kmax 8.0 differs from the run's 6.0" in capsys.readouterr().err
    assert (out / "config.json").read_text() == saved
    assert json.loads(saved)["epochs"] == 2


def test_a_config_saved_before_tilt_weighting_loads_without_it(tmp_path):
    """Runs trained before the tilt images' amplitude scale existed computed none: they load as "none"."""
    import json

    from cryofield.train import VaeConfig

    config = VaeConfig(particles="p.star", outdir=str(tmp_path), zdim=2)
    config.save(tmp_path / "config.json")
    assert VaeConfig.load(tmp_path / "config.json").tilt_weighting == "auto"
    values = json.loads((tmp_path / "config.json").read_text())
    del values["tilt_weighting"]
    (tmp_path / "config.json").write_text(json.dumps(values))
    assert VaeConfig.load(tmp_path / "config.json").tilt_weighting == "none"
