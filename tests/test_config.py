"""Configuration: one table of flags behind the CLI, build() against the dataclasses by hand, and
validation when a RunConfig is constructed."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from socjax import cli, config
from socjax.config import ConfigError, ModelConfig, RunConfig, TrackedWeight


def train_actions():
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return {a.dest: a for a in sub.choices["train"]._actions}, {a.dest: a for a in sub.choices["reproduce"]._actions}


def test_every_flag_of_the_table_is_on_the_command_line_and_refused_on_resume():
    train, reproduce = train_actions()
    for flag in config.FLAGS:
        for actions in (train, reproduce):
            assert flag.option in actions[flag.dest].option_strings
            assert actions[flag.dest].default is None  # "not given" is None, so build and resume can tell
        want = [] if flag.dest == "epochs" else [flag.option]
        assert config.resume_conflicts({flag.dest: 1}) == want
    # choices come from the one declaration of each list
    assert tuple(train["loss"].choices) == config.LOSSES == ("mse", "xent")
    assert train["dataset"].choices is None  # DATASETS or any tensorflow-datasets name: checked by RunConfig
    assert tuple(train["optimizer"].choices) == config.OPTIMIZERS
    assert list(train["step"].choices) == ["auto", *config.STEPS]
    assert tuple(train["preset"].choices) == tuple(config.PRESETS)


def test_build_equals_the_preset_with_its_fields_replaced_by_hand():
    got = config.build("quick", epochs=12, record_epochs=2, seeds=3, seed=5, lr=[1e-3, 2e-3], hidden=[64, 32],
                       loss="xent", decay_biases=False, track_seed=7, pixel_scale=1.0, stride=4, save_order=True)
    base = config.PRESETS["quick"]
    want = dataclasses.replace(
        base, epochs_equilibrate=10, epochs_record=2, seeds=(5, 6, 7), lr=(1e-3, 2e-3), track_seed=7,
        pixel_scale=1.0, stride=4, save_order=True,
        model=ModelConfig(sizes=(784, 64, 32, 10), loss="xent", decay_biases=False))
    assert got == want
    assert config.build() == dataclasses.replace(config.PRESETS["quick"], seeds=(0,))
    assert config.build("smoke", epochs=1) == dataclasses.replace(config.PRESETS["smoke"], epochs_equilibrate=0,
                                                                  epochs_record=1)
    assert config.build("smoke", data_dir="/d").dataset == "mnist"


def test_new_flags_reach_the_config():
    args = cli.build_parser().parse_args(["train", "--out", "x", "--track-seed", "3", "--pixel-scale", "127.5",
                                          "--no-decay-biases"])
    cfg = cli.train_config(args)
    assert cfg.track_seed == 3 and cfg.pixel_scale == 127.5 and cfg.model.decay_biases is False


@pytest.mark.parametrize("make, message", [
    (lambda: RunConfig(lr=(0.0,)), "learning rate must be positive"),
    (lambda: RunConfig(l2=(-1.0,)), "l2 must be non-negative"),
    (lambda: RunConfig(seeds=(1, 1)), "seeds must be distinct"),
    (lambda: RunConfig(step="nonesuch"), "unknown step 'nonesuch'"),
    (lambda: RunConfig(dataset="CIFAR 10"), "unknown dataset 'CIFAR 10'"),
    (lambda: RunConfig(track_weights=(TrackedWeight.mlp(2, 700, 0),)), "w2 has shape (700, 476)"),
    (lambda: ModelConfig(sizes=(700, 10, 9)), "must start at 784 (pixels of (28, 28, 1)) and end at the number of classes"),
    (lambda: ModelConfig(sizes=(784, 10, 1)), "end at the number of classes (at least 2), got (784, 10, 1)"),
    (lambda: ModelConfig(loss="hinge"), "unknown loss 'hinge'"),
    (lambda: config.build("huge"), "unknown preset 'huge'"),
    (lambda: config.build("smoke", dataset="mnist", data_dir="/d"), "give it or --dataset, not both"),
    (lambda: config.extend(config.PRESETS["smoke"], 2), "shorter than the run's 3"),
])
def test_an_invalid_config_cannot_be_constructed(make, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make()


def test_an_edited_config_json_is_validated_when_read():
    d = RunConfig().to_json()
    assert RunConfig.from_json(d) == RunConfig()
    d["lr"] = [-2e-3]
    with pytest.raises(ConfigError, match="learning rate must be positive"):
        RunConfig.from_json(d)


def test_version_and_lazy_submodules():
    import socjax

    res = subprocess.run([sys.executable, "-m", "socjax", "--version"], capture_output=True, text=True)
    assert res.returncode == 0 and res.stdout.strip() == f"socjax {socjax.__version__}"
    code = "import sys, socjax; assert 'jax' not in sys.modules; print(socjax.rundir.__name__, socjax.toy.__name__)"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0 and res.stdout.split() == ["socjax.rundir", "socjax.toy"], res.stderr
