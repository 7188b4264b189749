"""Optimizers (optax) and minibatches in the one trainer: each rule against a float64 NumPy replay
of its published update on the same example order; resume bit for bit with Adam's moments in the
checkpoint; sweeps, --weight-stats and analyze for every optimizer; bad input refused in one line."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from socjax import data, rundir, train
from socjax.config import ModelConfig, OptimizerConfig, TrackedWeight

from test_cli import main, no_compile, refused  # noqa: F401 (a fixture)

SMALL = ModelConfig(sizes=(784, 32, 16, 10))
OPTIMIZERS = [OptimizerConfig("momentum", momentum=0.8), OptimizerConfig("nesterov", momentum=0.8),
              OptimizerConfig("adam", b1=0.85, b2=0.99, eps=1e-7),
              OptimizerConfig("adamw", b1=0.85, b2=0.99, eps=1e-7, weight_decay=0.05)]


def mean_gradients64(ws, bs, xs, ys):
    """The minibatch's mean MSE loss (eq. 10) and its gradients, in float64, by manual backprop
    through ReLU hidden layers."""
    gws, gbs = [np.zeros_like(w) for w in ws], [np.zeros_like(b) for b in bs]
    total = 0.0
    for x, y in zip(xs, ys):
        hs, zs = [np.asarray(x, np.float64)], []
        for i, (w, b) in enumerate(zip(ws, bs)):
            zs.append(hs[-1] @ w + b)
            hs.append(np.maximum(zs[-1], 0) if i < len(ws) - 1 else zs[-1])
        delta = hs[-1] - np.eye(hs[-1].shape[0])[y]
        total += 0.5 * np.sum(delta**2)
        for i in reversed(range(len(ws))):
            gws[i] += np.outer(hs[i], delta) / len(xs)
            gbs[i] += delta / len(xs)
            if i > 0:
                delta = (ws[i] @ delta) * (zs[i - 1] > 0)
    return total / len(xs), gws, gbs


def replay64(params, batches, lr: float, l2: float, opt: OptimizerConfig):
    """The optimizer's update as optax documents it, in float64, on g = mean data-loss gradient +
    l2 * p (weights and biases, decay_biases): returns the final parameters [(w, b)] and each
    step's mean loss."""
    p = [np.asarray(x, np.float64) for layer in params for x in (layer.w, layer.b)]
    m, v = [np.zeros_like(x) for x in p], [np.zeros_like(x) for x in p]
    losses = []
    for t, (xs, ys) in enumerate(batches, start=1):
        loss, gws, gbs = mean_gradients64(p[0::2], p[1::2], xs, ys)
        losses.append(loss)
        g = [gx + l2 * x for gx, x in zip([a for pair in zip(gws, gbs) for a in pair], p)]
        for i, gi in enumerate(g):
            if opt.name in ("momentum", "nesterov"):  # optax.trace: m <- g + mu m
                m[i] = gi + opt.momentum * m[i]
                u = gi + opt.momentum * m[i] if opt.name == "nesterov" else m[i]
                p[i] = p[i] - lr * u
            else:  # optax.scale_by_adam, then adamw's decoupled decay, then -lr
                m[i] = opt.b1 * m[i] + (1 - opt.b1) * gi
                v[i] = opt.b2 * v[i] + (1 - opt.b2) * gi**2
                u = (m[i] / (1 - opt.b1**t)) / (np.sqrt(v[i] / (1 - opt.b2**t)) + opt.eps)
                if opt.name == "adamw":
                    u = u + opt.weight_decay * p[i]
                p[i] = p[i] - lr * u
    return list(zip(p[0::2], p[1::2])), np.array(losses)


@pytest.mark.parametrize("opt", OPTIMIZERS, ids=lambda o: o.name)
def test_50_minibatch_steps_follow_a_float64_replay_of_the_optimizer(mini, opt):
    """50 steps of batch 4 (200 examples, one epoch) with L2: the trainer's float32 parameters stay
    within float32 rounding of the float64 replay (measured: at most 1.1e-7, four float32 ulps of
    the largest weights, 0.28; the weights moved by up to 0.05-0.1), its epoch's train loss is the replay's mean step loss, and it took the examples of the
    epoch's order four at a time."""
    lr, l2, b = (1e-3 if opt.name.startswith("adam") else 1e-2), 5e-3, 4
    ds = jax.device_put(data.Dataset(mini.train_x[:200], mini.train_y[:200], mini.test_x[:50], mini.test_y[:50]))
    state = train.init_runs([3], SMALL, False, opt)
    start = jax.device_get(state.params)
    spec = train.TrainSpec(SMALL, (TrackedWeight.mlp(1, 300, 5),), 1, True, save_order=True, optimizer=opt, batch_size=b)
    state, out = train.make_train_chunk(spec, 1)(state, train.Hyper(jnp.full((1,), lr), jnp.full((1,), l2)), ds)
    order = np.asarray(out.order[0, 0])
    assert sorted(order) == list(range(200))  # one shuffled pass, nothing left over at 200 = 50 * 4
    assert out.trajectory.shape == (1, 50, 1)
    batches = [(mini.train_x[order[i:i + b]], mini.train_y[order[i:i + b]]) for i in range(0, 200, b)]
    want, losses = replay64([jax.tree.map(lambda a: a[0], layer) for layer in start], batches, lr, l2, opt)
    got = jax.device_get(state.params)
    for layer, (w, bias) in zip(got, want):
        np.testing.assert_allclose(layer.w[0], w, rtol=0, atol=5e-7)
        np.testing.assert_allclose(layer.b[0], bias, rtol=0, atol=5e-7)
    # the moves are far larger than the tolerance, so the replay of another rule would fail
    moved = max(float(np.max(np.abs(w - np.asarray(s.w[0], np.float64)))) for (w, _), s in zip(want, start))
    assert moved > 1e-3
    np.testing.assert_allclose(float(out.metrics.train_loss[0, 0]), losses.mean(), rtol=1e-5)
    np.testing.assert_allclose(float(out.trajectory[0, -1, 0]), want[0][0][300, 5], rtol=0, atol=5e-7)


def test_the_remainder_of_an_epoch_sits_out_and_steps_count_as_steps(mini):
    """B = 3 on 200 examples: 66 steps an epoch, the order's last 2 examples unused; the stride
    counts steps (33 rows at stride 2)."""
    ds = jax.device_put(data.Dataset(mini.train_x[:200], mini.train_y[:200], mini.test_x[:50], mini.test_y[:50]))
    state = train.init_runs([0], SMALL)
    full = [np.asarray(train.epoch_order(state.key[0], jnp.int32(e), 200)) for e in range(2)]
    spec = train.TrainSpec(SMALL, (TrackedWeight.mlp(2, 1, 1),), 2, True, save_order=True, batch_size=3)
    _, out = train.make_train_chunk(spec, 2)(state, train.Hyper(jnp.full((1,), 1e-2), jnp.full((1,), 0.0)), ds)
    assert out.order.shape == (1, 2, 198) and out.trajectory.shape == (1, 66, 1)
    for e in range(2):
        np.testing.assert_array_equal(out.order[0, e], full[e][:198])
    assert set(full[0][198:]) != set(full[1][198:])  # another remainder sits out each epoch


@pytest.fixture(scope="module")
def adam_runs(tmp_path_factory):
    """A two-run sweep trained straight through (4 epochs, all recorded) and the same in two
    sessions (2, then resumed to 4; a resume records the epochs it adds)."""
    root = tmp_path_factory.mktemp("adam")
    args = ["train", "--preset", "smoke", "--hidden", "16", "--train-limit", "400", "--batch-size", "4",
            "--optimizer", "adam", "--b1", "0.8", "--lr", "1e-3", "--l2", "5e-4", "1e-3", "--track", "6",
            "--weight-stats", "--no-progress"]
    assert main([*args, "--epochs", "4", "--record-epochs", "4", "--out", str(root / "straight")]) == 0
    assert main([*args, "--epochs", "2", "--record-epochs", "2", "--out", str(root / "twice")]) == 0
    assert main(["train", "--resume", str(root / "twice"), "--epochs", "4", "--no-progress"]) == 0
    return root


def test_resume_with_adam_is_bitwise(adam_runs):
    a, b = adam_runs / "straight", adam_runs / "twice"
    np.testing.assert_array_equal(rundir.load_trajectory(a), rundir.load_trajectory(b))
    for name in ("checkpoint.npz", "params_final.npz", "weight_stats.npz"):
        with np.load(a / name) as x, np.load(b / name) as y:
            for k in x.files:
                if k != "__meta__":
                    np.testing.assert_array_equal(x[k], y[k], err_msg=f"{name}:{k}")
    # Adam's moments are in the checkpoint: its paths name mu and nu, and they are not zero
    with np.load(a / "checkpoint.npz") as z:
        meta = json.loads(str(z["__meta__"]))
        mu = [i for i, p in enumerate(meta["paths"]) if ".mu" in p]
        assert mu and all(np.any(z[f"leaf_{i}"] != 0) for i in mu)
    cfg = rundir.read_info(a).config
    assert (cfg.optimizer.name, cfg.optimizer.b1, cfg.batch_size) == ("adam", 0.8, 4)
    layout = rundir.load_config(a)["trajectory"]
    assert layout["steps_per_epoch"] == 100 and layout["batch_size"] == 4 and layout["steps"] == 400


def test_sweep_runs_equal_their_settings_run_alone(adam_runs, tmp_path):
    """Run 1 of the sweep (l2 1e-3) equals the same setting trained alone (vmapped XLA may reorder
    float32 sums: within 1e-6)."""
    assert main(["train", "--preset", "smoke", "--hidden", "16", "--train-limit", "400", "--batch-size", "4",
                 "--optimizer", "adam", "--b1", "0.8", "--lr", "1e-3", "--l2", "1e-3", "--track", "6",
                 "--record-epochs", "4", "--epochs", "4", "--no-progress", "--out", str(tmp_path / "one")]) == 0
    sweep, one = rundir.load_params(adam_runs / "straight", "final"), rundir.load_params(tmp_path / "one", "final")
    for k in one:
        np.testing.assert_allclose(sweep[k][1], one[k][0], rtol=0, atol=1e-6, err_msg=k)
    assert not np.allclose(sweep["w1"][0], one["w1"][0], rtol=0, atol=1e-6)  # the other l2 differs


def test_an_adam_run_is_analysed_with_its_zero_gradient_flags(adam_runs, capsys):
    """Under Adam a zero-gradient step still moves the weight: the analysis takes decay from the
    XLA step's recorded flags (tests/test_zero_grad.py has the run without them)."""
    run = adam_runs / "straight"
    assert main(["analyze", str(run), "--no-progress"]) == 0
    result = json.loads((run / "analysis.json").read_text())
    assert not any("carries earlier gradients" in w for w in result["warnings"])
    inc = result["groups"][0]["increments"]
    assert inc["decay_identified"] and inc["decay_from"] == "flags"
    flags = rundir.open_zero_grad(run, 6)
    zero = flags[:, 1:, :]  # the flag of increment t -> t + 1 sits on row t + 1
    assert [w["decay_fraction"] for w in result["per_weight"][:6]] == pytest.approx(list(zero[0].mean(0)))
    header = (run / "report.md").read_text()
    assert "optimizer adam (b1 0.8, b2 0.999, eps 1e-08), batch size 4" in header
    assert "had an exactly zero data gradient (recorded flags)" in header


def test_an_edited_optimizer_setting_is_refused_on_resume(adam_runs, capsys):
    run = adam_runs / "twice"
    cfg = json.loads((run / "config.json").read_text())
    cfg["config"]["optimizer"]["b1"] = 0.9
    (run / "config.json").write_text(json.dumps(cfg))
    refused(["train", "--resume", str(run), "--epochs", "6", "--no-progress"], "optimizer.b1: 0.8 -> 0.9", capsys)


@pytest.mark.parametrize("args, message", [
    (["--optimizer", "lion"], "argument --optimizer: invalid choice: 'lion'"),
    (["--momentum", "0.5"], "--momentum does not apply to --optimizer sgd"),
    (["--optimizer", "adam", "--momentum", "0.5"], "--momentum does not apply to --optimizer adam (it reads --b1, --b2, --eps)"),
    (["--optimizer", "momentum", "--momentum", "1"], "momentum must be in [0, 1), got 1.0"),
    (["--optimizer", "adam", "--eps", "0"], "eps must be positive and finite, got 0.0"),
    (["--optimizer", "adamw", "--weight-decay", "-1"], "weight_decay must be non-negative and finite"),
    (["--batch-size", "0"], "argument --batch-size: must be >= 1, got 0"),
    (["--batch-size", "2001"], "batch_size 2001 exceeds the 2,000 training examples"),
    (["--batch-size", "3", "--stride", "7"], "stride 7 must divide the number of steps per epoch (666)"),
    (["--optimizer", "adam", "--step", "native"],
     "--step native: the native step is the paper's plain SGD; --optimizer adam runs on xla"),
])
def test_bad_optimizer_or_batch_is_one_line_error_with_nothing_written(args, message, tmp_path, capsys, no_compile):
    out = tmp_path / "r"
    refused(["train", "--preset", "smoke", "--no-progress", "--out", str(out), *args], message, capsys)
    assert list(tmp_path.iterdir()) == []
