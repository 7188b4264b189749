"""Any flax model in the one trainer: the flax MLP against the pure-function MLP on the same
parameters; a CNN's tracked kernels against its saved parameters; a user's module from a file;
weights addressed by path and index; bad models refused in one line with nothing written."""

from __future__ import annotations

import json
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from socjax import data, model, rundir, train
from socjax.config import ModelConfig, OptimizerConfig, TrackedWeight
from socjax.step import Hyper, make_optimizer, xla_step

from test_cli import main, no_compile, refused  # noqa: F401 (a fixture)

PURE = ModelConfig(sizes=(784, 32, 16, 10))
FLAX = ModelConfig(sizes=(784, 32, 16, 10), arch="flax-mlp")


def as_flax(params: model.Params) -> dict:
    """The pure MLP's parameters as the flax MLP's: w{i+1}, b{i+1} -> Dense_i/kernel, Dense_i/bias."""
    return {f"Dense_{i}": {"kernel": layer.w, "bias": layer.b} for i, layer in enumerate(params)}


def test_flax_mlp_on_the_pure_models_parameters_computes_the_same(mini):
    """Outputs, gradients and one step's update (adam with L2, batch 4) are identical; the flax
    MLP's own init draws from the same law (torch's U(+-1/sqrt(fan_in)) for kernels and biases)."""
    params = model.init(jax.random.key(0), PURE)
    twin = as_flax(params)
    x, y = jnp.asarray(mini.train_x[:4]), jnp.asarray(mini.train_y[:4])
    np.testing.assert_array_equal(jax.vmap(model.forward(FLAX), in_axes=(None, 0))(twin, x),
                                  jax.vmap(model.apply, in_axes=(None, 0))(params, x))
    opt, hyper = OptimizerConfig("adam"), Hyper(jnp.float32(1e-3), jnp.float32(5e-4))
    a = xla_step(params, make_optimizer(hyper, PURE, opt).init(params), x, y, hyper, PURE, opt)
    b = xla_step(twin, make_optimizer(hyper, FLAX, opt).init(twin), x, y, hyper, FLAX, opt)
    assert float(a.loss) == float(b.loss) and float(a.correct) == float(b.correct)
    for got, want in ((b.grads, a.grads), (b.params, a.params)):
        for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(as_flax(want)), strict=True):
            np.testing.assert_array_equal(g, w)
    own = model.init(jax.random.key(1), FLAX)
    assert model.kernels(FLAX) == [("Dense_0/kernel", (784, 32)), ("Dense_1/kernel", (32, 16)),
                                   ("Dense_2/kernel", (16, 10))]
    named = model.named(own)
    for i, fan_in in enumerate((784, 32, 16)):
        for kind in ("kernel", "bias"):
            top = float(np.abs(named[f"Dense_{i}/{kind}"]).max())
            assert 0.8 / np.sqrt(fan_in) < top <= 1 / np.sqrt(fan_in), (i, kind)


def test_flax_mlp_trains_as_the_pure_mlp_through_the_trainer(mini):
    """Two epochs of 100 examples, from the same parameters: the same trajectory and parameters."""
    ds = jax.device_put(data.Dataset(mini.train_x[:100], mini.train_y[:100], mini.test_x[:50], mini.test_y[:50]))
    hyper = Hyper(jnp.full((1,), 2e-3), jnp.full((1,), 5e-4))
    pure = train.init_runs([0], PURE)
    twin = train.init_runs([0], PURE)  # its own buffers: the trainer donates its input
    flax = twin._replace(params=as_flax(twin.params))
    tracked = (TrackedWeight.mlp(1, 300, 5), TrackedWeight.mlp(2, 3, 4))
    twin_tracked = (TrackedWeight("Dense_0/kernel", (300, 5)), TrackedWeight("Dense_1/kernel", (3, 4)))
    a_state, a = train.make_train_chunk(train.TrainSpec(PURE, tracked, 1, True), 2)(pure, hyper, ds)
    b_state, b = train.make_train_chunk(train.TrainSpec(FLAX, twin_tracked, 1, True), 2)(flax, hyper, ds)
    np.testing.assert_array_equal(a.trajectory, b.trajectory)
    np.testing.assert_array_equal(a.metrics.test_loss, b.metrics.test_loss)
    for g, w in zip(jax.tree.leaves(b_state.params), jax.tree.leaves(as_flax(a_state.params)), strict=True):
        np.testing.assert_array_equal(g, w)


@pytest.fixture(scope="module")
def cnn_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("cnn") / "run"
    assert main(["train", "--preset", "smoke", "--model", "cnn", "--hidden", "24", "--train-limit", "400",
                 "--batch-size", "4", "--optimizer", "momentum", "--track", "6", "--track-weights",
                 "Conv_1/kernel:2,2,0,5", "Dense_0/kernel:130,20", "--no-progress", "--out", str(run)]) == 0
    return run


def test_a_cnn_runs_tracked_kernels_equal_its_saved_parameters(cnn_run):
    tracked = rundir.load_tracked(cnn_run)
    assert [str(t) for t in tracked] == ["Conv_1/kernel:2,2,0,5", "Dense_0/kernel:130,20"]
    final = rundir.load_params(cnn_run, "final")
    assert final["Conv_0/kernel"].shape == (1, 5, 5, 1, 8) and final["Dense_0/kernel"].shape == (1, 784, 24)
    traj = rundir.load_trajectory(cnn_run)
    assert traj.shape == (1, 200, 2)  # 2 recorded epochs of 100 steps (batch 4 of 400)
    for k, t in enumerate(tracked):
        assert traj[0, -1, k] == final[t.path][(0, *t.index)]
        assert traj[0, 0, k] != traj[0, -1, k]  # it moved
    cfg = rundir.read_info(cnn_run).config
    assert cfg.model.arch == "cnn" and cfg.step == "xla"


def test_track_draws_half_from_each_of_the_first_two_kernels():
    cnn = ModelConfig(arch="cnn", sizes=(784, 24, 10))
    tracked = train.select_tracked(cnn, 9, 0)
    assert [t.path for t in tracked] == ["Conv_0/kernel"] * 4 + ["Conv_1/kernel"] * 5
    assert all(0 <= i < n for t in tracked for i, n in zip(t.index, dict(model.kernels(cnn))[t.path]))
    assert len(set(tracked)) == 9
    # the paper's MLP: the same rule names w1 and w2, as the LAYER:ROW:COL draw did
    assert {t.path for t in train.select_tracked(PURE, 4, 0)} == {"w1", "w2"}


def test_both_spellings_of_an_mlp_weight_address_the_same_element(tmp_path):
    for name, spelling in (("old", "1:3:4"), ("new", "w1:3,4")):
        assert main(["train", "--preset", "smoke", "--hidden", "16", "--train-limit", "200", "--epochs", "1",
                     "--track-weights", spelling, "w2:0,1", "--step", "xla", "--no-progress",
                     "--out", str(tmp_path / name)]) == 0
    assert rundir.load_tracked(tmp_path / "old") == rundir.load_tracked(tmp_path / "new")
    assert json.loads((tmp_path / "new" / "tracked.json").read_text())[0] == {"path": "w1", "index": [3, 4]}
    np.testing.assert_array_equal(rundir.load_trajectory(tmp_path / "old"), rundir.load_trajectory(tmp_path / "new"))
    # a run directory from before paths ({"layer", "row", "col"}) reads as the same weights
    (tmp_path / "old" / "tracked.json").write_text(json.dumps([dict(layer=1, row=3, col=4), dict(layer=2, row=0, col=1)]))
    assert rundir.load_tracked(tmp_path / "old") == rundir.load_tracked(tmp_path / "new")


USER_MODULE = """
import flax.linen as nn


class Tiny(nn.Module):
    @nn.compact
    def __call__(self, x):  # one example, (28, 28, 1)
        h = nn.tanh(nn.Dense(12)(x.reshape(-1)))
        return nn.Dense(10)(h)


def build():
    return Tiny()


def not_a_module():
    return 42
"""


def test_a_users_module_in_a_file_trains_and_is_analysed_through_the_cli(tmp_path, monkeypatch):
    (tmp_path / "my_net.py").write_text(textwrap.dedent(USER_MODULE))
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--preset", "smoke", "--model", "my_net:build", "--train-limit", "200", "--epochs", "3",
                 "--track", "4", "--no-progress", "--out", "run"]) == 0
    assert main(["analyze", "run", "--no-progress"]) == 0
    final = rundir.load_params(tmp_path / "run", "final")
    assert sorted(final) == ["Dense_0/bias", "Dense_0/kernel", "Dense_1/bias", "Dense_1/kernel"]
    result = json.loads((tmp_path / "run" / "analysis.json").read_text())
    assert {w["weight"].split(":")[0] for w in result["per_weight"]} == {"Dense_0/kernel", "Dense_1/kernel"}
    assert "my_net:build (a user module)" in (tmp_path / "run" / "report.md").read_text()


@pytest.mark.parametrize("args, message", [
    (["--model", "no_such_module:build"], "--model no_such_module:build: cannot import no_such_module"),
    (["--model", "my_net:missing"], "--model my_net:missing: my_net has no function missing"),
    (["--model", "my_net:not_a_module"], "not_a_module() returned a int, not a flax.linen.Module"),
    (["--model", "not a module"], "unknown model 'not a module'"),
    (["--model", "cnn", "--track-weights", "Dense_9/kernel:0,0"], "the model has no weight 'Dense_9/kernel'"),
    (["--model", "cnn", "--track-weights", "Conv_0/kernel:0,0"], "Conv_0/kernel has shape (5, 5, 1, 8)"),
    (["--model", "cnn", "--weight-stats"], "--weight-stats covers the paper's pure-function MLP"),
    (["--activation", "tanh"], "the paper's MLP (--model mlp) is ReLU"),
    (["--model", "cnn", "--step", "native"], "--step native: the native step trains the paper's pure-function MLP"),
])
def test_a_bad_model_is_one_line_error_with_nothing_written(args, message, tmp_path, monkeypatch, capsys,
                                                            no_compile):
    (tmp_path / "my_net.py").write_text(textwrap.dedent(USER_MODULE))
    monkeypatch.chdir(tmp_path)
    refused(["train", "--preset", "smoke", "--no-progress", "--out", "r", *args], message, capsys)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "__pycache__") == ["my_net.py"]


def test_fig1_reads_any_models_hidden_layer(mini):
    """The flax MLP's Dense_1 pre-activations are the pure MLP's layer 2 on the same parameters
    (same bimodality summary); a convolution's neurons are its channels at every position, equal
    to the Conv module applied alone to each image."""
    from socjax.analysis import neurons

    params = model.init(jax.random.key(2), PURE)
    x = mini.test_x[:300]
    a, za, _ = neurons.analyze(params, x, 2)
    b, zb, _ = neurons.analyze(as_flax(params), x, "Dense_1", FLAX)
    np.testing.assert_array_equal(za, zb)
    assert {k: v for k, v in a.items() if k != "layer"} == {k: v for k, v in b.items() if k != "layer"}
    assert neurons.layers(FLAX) == ["Dense_0", "Dense_1"] and neurons.default_layer(FLAX) == "Dense_1"
    assert neurons.layers(PURE) == ["w1", "w2"] and neurons.default_layer(PURE) == "w2"

    import flax.linen as nn

    cnn = ModelConfig(arch="cnn", sizes=(784, 24, 10))
    p = model.init(jax.random.key(3), cnn)
    z = np.asarray(neurons.preactivations(p, jnp.asarray(x[:5]), "Conv_0", cnn))
    conv = nn.Conv(8, (5, 5), padding="SAME")
    want = np.concatenate([np.asarray(conv.apply({"params": p["Conv_0"]}, xi.reshape(28, 28, 1))).reshape(-1, 8)
                           for xi in x[:5]])
    np.testing.assert_allclose(z, want, rtol=1e-6, atol=1e-6)
    assert neurons.default_layer(cnn) == "Conv_1"


def test_a_bad_neuron_layer_is_one_line(cnn_run, capsys):
    refused(["analyze", str(cnn_run), "--no-progress", "--neuron-layer", "Dense_9"],
            "--neuron-layer Dense_9: not a hidden layer of this model; choose Conv_0, Conv_1, Dense_0", capsys)


def test_the_weights_of_a_deep_flax_model_are_in_layer_order():
    """Twelve Dense layers: Dense_2 comes before Dense_10 and the output layer, Dense_11, is last
    (jax's own order of the names would put Dense_10 and Dense_11 before Dense_2)."""
    from socjax.analysis import neurons

    deep = ModelConfig(arch="flax-mlp", sizes=(784, *[8] * 11, 10))
    names = [path.removesuffix("/kernel") for path, _ in model.kernels(deep)]
    assert names == [f"Dense_{i}" for i in range(12)]
    assert model.kernels(deep)[-1][1] == (8, 10) and neurons.layers(deep)[-1] == "Dense_10"
