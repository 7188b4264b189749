"""Per-example SGD throughput: socjax's scan trainer against the obvious alternatives.

Measured in one process, interleaved (round r times every method once, so drifts in machine load
hit all methods alike), reporting the median over rounds of SGD steps per second:

  xla           socjax's trainer (train.make_train_chunk) with the XLA step: one compiled call per
                epoch of --steps examples, tracking 16 weights at every step, end-of-epoch test
                evaluation on the embedded 2,000 test images included
  native        the same trainer with the native C++ step (socjax.native; CPU only)
  native +stats the native step with --weight-stats accumulating
  jit-loop      the XLA step (socjax.step.xla_step) jitted and called from a Python loop (dispatch per step)
  torch-eager   PyTorch eager, same model, loss, SGD(lr, weight_decay) and per-example loop
                (only when torch is installed; the table says when it is not)
  xla S=k, native S=k   k seeds vmapped; steps/s counts seed-steps (k per step)
  flax-mlp xla  the paper's network as a flax Module (--model flax-mlp) on the XLA step
  xla B=64      minibatches of 64 (--batch-size 64); a step takes 64 examples (examples/s column)
  cnn xla       the LeNet-like flax CNN (--model cnn, dense head 128) on the XLA step, batch 1

    python benchmarks/throughput.py [--steps 5000] [--rounds 5] [--out benchmarks/results/NAME.json]

The native rows need the kernel to build (g++; SOCJAX_NATIVE_ARCH=native for AVX-512); without it
they are left out and the table says why.

XLA flags (e.g. XLA_FLAGS=--xla_gpu_enable_command_buffer=...) must be set in the environment
before the run; they are recorded in the JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from socjax import data, train
from socjax.config import ModelConfig
from socjax.native import build
from socjax.step import xla_step

CFG = ModelConfig()
FLAX_MLP = ModelConfig(arch="flax-mlp")
CNN = ModelConfig(arch="cnn", sizes=(784, 128, 10))
LR, L2 = 2e-3, 5e-4


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown"


def make_scan(ds, seeds: int, step: str = "xla", weight_stats: bool = False, cfg: ModelConfig = CFG,
              batch: int = 1):
    tracked = train.select_tracked(cfg, 16, 0)
    spec = train.TrainSpec(cfg, tracked, 1, record=True, weight_stats=weight_stats, step=step, batch_size=batch)
    fn = train.make_train_chunk(spec, 1)
    hyper = train.Hyper(jnp.full((seeds,), LR, jnp.float32), jnp.full((seeds,), L2, jnp.float32))
    box = {"state": train.init_runs(list(range(seeds)), cfg, weight_stats)}
    steps = ds.train_x.shape[0] // batch * seeds

    def run():
        box["state"], out = fn(box["state"], hyper, ds)
        jax.block_until_ready((box["state"], out))

    return run, steps, batch


def make_jit_loop(ds, steps: int):
    hyper = train.Hyper(jnp.float32(LR), jnp.float32(L2))
    step = jax.jit(lambda p, o, x, y: xla_step(p, o, x, y, hyper, CFG)[:4], donate_argnums=(0, 1))
    state = train.init_state(jax.random.key(0), CFG)
    box = {"p": state.params, "o": state.opt_state}
    xs, ys = ds.train_x[:steps], ds.train_y[:steps]

    def run():
        p, o = box["p"], box["o"]
        for i in range(steps):
            p, o, loss, _ = step(p, o, xs[i], ys[i])
        jax.block_until_ready(p)
        box["p"], box["o"] = p, o

    return run, steps, 1


def make_torch(ds, steps: int):
    try:
        import torch
    except ImportError:
        return None, 0, 1
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(784, 700), torch.nn.ReLU(), torch.nn.Linear(700, 476), torch.nn.ReLU(), torch.nn.Linear(476, 10)
    )
    opt = torch.optim.SGD(net.parameters(), lr=LR, weight_decay=L2)
    xs = torch.from_numpy(np.array(ds.train_x[:steps]))
    targets = torch.nn.functional.one_hot(torch.from_numpy(np.array(ds.train_y[:steps])).long(), 10).float()

    def run():
        for i in range(steps):
            opt.zero_grad(set_to_none=True)
            loss = 0.5 * ((net(xs[i]) - targets[i]) ** 2).sum()
            loss.backward()
            opt.step()

    return run, steps, 1


def versions() -> dict:
    import optax

    v = dict(python=platform.python_version(), jax=jax.__version__, jaxlib=jax.lib.__version__,
             optax=optax.__version__, numpy=np.__version__)
    try:
        import torch

        v["torch"] = torch.__version__
        v["torch_threads"] = torch.get_num_threads()
    except ImportError:
        v["torch"] = None
    return v


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=5000, help="examples per compiled epoch (scan, vmap)")
    p.add_argument("--loop-steps", type=int, default=1000, help="steps per round for jit-loop and torch-eager")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--seeds", type=int, nargs="+", default=[2, 4], help="vmapped seed counts (xla and native)")
    p.add_argument("--out", help="JSON path (default benchmarks/results/<backend>-<host>.json)")
    args = p.parse_args()

    mini = data.decode(data.load_embedded())
    ds = jax.device_put(data.Dataset(mini.train_x[: args.steps], mini.train_y[: args.steps], mini.test_x, mini.test_y))

    native = build.unavailable() is None
    methods = {"xla": make_scan(ds, 1)}
    if native:
        methods["native"] = make_scan(ds, 1, "native")
        methods["native +stats"] = make_scan(ds, 1, "native", weight_stats=True)
    methods["jit-loop"] = make_jit_loop(ds, args.loop_steps)
    torch_run = make_torch(ds, args.loop_steps)
    if torch_run[0] is not None:
        methods["torch-eager"] = torch_run
    for s in args.seeds:
        methods[f"xla S={s}"] = make_scan(ds, s)
        if native:
            methods[f"native S={s}"] = make_scan(ds, s, "native")
    methods["flax-mlp xla"] = make_scan(ds, 1, cfg=FLAX_MLP)
    batch = min(64, args.steps)  # 64 unless a smoke test asks for fewer steps
    methods[f"xla B={batch}"] = make_scan(ds, 1, batch=batch)
    methods["cnn xla"] = make_scan(ds, 1, cfg=CNN)

    for name, (run, *_) in methods.items():  # compile and warm up
        run()
    times: dict[str, list[float]] = {name: [] for name in methods}
    for r in range(args.rounds):
        for name, (run, *_) in methods.items():
            t = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - t)
        print(f"round {r + 1}/{args.rounds} done", flush=True)

    rows = []
    for name, (_, steps, batch) in methods.items():
        med = statistics.median(times[name])
        rows.append(dict(method=name, steps=steps, batch_size=batch, seconds=times[name], median_s=med,
                         steps_per_s=steps / med, examples_per_s=steps * batch / med, us_per_step=1e6 * med / steps))
    base = {r["method"]: r["steps_per_s"] for r in rows}
    device = jax.devices()[0]
    result = dict(
        machine=dict(cpu=cpu_model(), cores=os.cpu_count(), host=platform.node(), arch=platform.machine()),
        backend=jax.default_backend(),
        device=str(getattr(device, "device_kind", device)),
        xla_flags=os.environ.get("XLA_FLAGS", ""),
        native=dict(arch=build.arch(), unavailable=build.unavailable()),
        versions=versions(),
        args=vars(args),
        rows=rows,
    )

    print(f"\nbackend {result['backend']} ({result['device']}), {result['machine']['cpu']}, "
          f"{result['machine']['cores']} cores; median of {args.rounds} interleaved rounds")
    print(f"{'method':<15}{'steps/s':>12}{'examples/s':>12}{'us/step':>10}{'x xla':>8}{'x torch':>9}")
    for r in rows:
        rel = f"{r['steps_per_s'] / base['torch-eager']:.1f}" if "torch-eager" in base else "-"
        print(f"{r['method']:<15}{r['steps_per_s']:>12,.0f}{r['examples_per_s']:>12,.0f}{r['us_per_step']:>10.1f}"
              f"{r['steps_per_s'] / base['xla']:>8.2f}{rel:>9}")
    if "torch-eager" not in base:
        print("torch-eager: not measured, torch is not installed (pip install torch)")
    if not native:
        print(f"native: not measured, {build.unavailable()}")

    out = Path(args.out or Path(__file__).parent / "results" / f"{result['backend']}-{platform.node()}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
