"""JAX's persistent compilation cache and the kept traces as the command line sets them up
(socjax.cache): a second process running the same analysis loads its programs from the cache (JAX
reports hits) and its traces from disk (the traced function is not called), and gets the same
numbers; SOCJAX_COMPILE_CACHE=0 turns both off."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from socjax import cache

CHILD = r"""
import json, sys
import jax
from jax import monitoring
from socjax import cache
events = {"hits": 0, "misses": 0}
def listen(name, **kw):
    if name == "/jax/compilation_cache/cache_hits":
        events["hits"] += 1
    elif name == "/jax/compilation_cache/cache_misses":
        events["misses"] += 1
monitoring.register_event_listener(listen)
where = cache.enable_compilation_cache()
# every program kept, however fast it compiles: with the 0.1 s threshold, one that compiles in
# about 0.1 s is kept by one process and not by the next as the machine's load varies
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
import numpy as np
from socjax.analysis import cutoff, increments, synthetic
traced = []
fn = cutoff._newton_batch.fn
def counted(*a, **k):
    traced.append(1)
    return fn(*a, **k)
cutoff._newton_batch.fn = counted  # what `persistent` traces when it has no trace on disk
fit = increments.fit_distribution(synthetic.hist_blocks(synthetic.sample("paper", np.random.default_rng(0), 20000)))
print(json.dumps(dict(events, where=str(where), gamma=fit["model"]["gamma"], verdicts=fit["model"]["verdicts"],
                      traced=len(traced))))
"""


def run(env) -> dict:
    res = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_second_process_hits_the_cache_with_the_same_numbers(tmp_path):
    env = {**os.environ, "SOCJAX_CACHE": str(tmp_path), "SOCJAX_COMPILE_CACHE": "1"}
    first, second = run(env), run(env)
    assert first["where"] == str(tmp_path / "xla")
    assert first["misses"] > 0 and first["hits"] == 0
    # nothing compiled afresh: every program the second process needs comes from the cache (the
    # first also compiles the programs that trace and export the fits, which the second skips)
    assert second["hits"] > 0 and second["misses"] == 0, (first, second)
    assert second["gamma"] == first["gamma"] and second["verdicts"] == first["verdicts"]
    # the traces: the first process traced the Newton fits and kept them, the second read them
    assert first["traced"] > 0 and second["traced"] == 0 and any((tmp_path / "traces").iterdir())
    off = run({**env, "SOCJAX_COMPILE_CACHE": "off"})
    assert off["where"] == "None" and off["hits"] == 0 and off["misses"] == 0
    assert off["gamma"] == first["gamma"]


def test_a_kept_trace_computes_what_the_jit_does_and_a_damaged_one_is_traced_again(monkeypatch, tmp_path):
    import jax
    import jax.numpy as jnp
    import numpy as np

    calls = []

    def same(a, b):
        for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
            np.testing.assert_array_equal(u, v)

    def f(x, y, *, power):
        calls.append(1)
        return jnp.sin(x) ** power + y.sum(), (x * 2, jnp.cumsum(y))

    monkeypatch.setattr(cache, "_traces", tmp_path)
    kept = cache.persistent(f, static_argnames=("power",))
    x, y = jnp.arange(3.0), jnp.ones((4,))
    got = kept(x, y, power=3)
    files = lambda: list(tmp_path.rglob("*.bin"))
    assert calls == [1] and len(files()) == 1
    same(got, jax.jit(f, static_argnames="power")(x, y, power=3))
    fresh = cache.persistent(f, static_argnames=("power",))  # as a new process: reads the file
    same(fresh(x, y, power=3), got)
    assert len(calls) == 2  # one more: the plain jit above, not the read
    fresh(x, y, power=2)  # another static argument: another trace
    assert len(calls) == 3 and len(files()) == 2
    for file in files():
        file.write_bytes(b"damaged")
    again = cache.persistent(f, static_argnames=("power",))
    same(again(x, y, power=3), got)
    assert len(calls) == 4
    monkeypatch.setattr(cache, "_traces", None)  # the cache off: the plain jit
    same(cache.persistent(f, static_argnames=("power",))(x, y, power=3), got)


def test_cache_directory_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SOCJAX_CACHE", str(tmp_path / "c"))
    monkeypatch.delenv("SOCJAX_COMPILE_CACHE", raising=False)
    assert cache.compilation_cache_dir() == tmp_path / "c" / "xla"
    monkeypatch.delenv("SOCJAX_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert cache.compilation_cache_dir() == tmp_path / "x" / "socjax" / "xla"
    for off in ("0", "off", "False", "no"):
        monkeypatch.setenv("SOCJAX_COMPILE_CACHE", off)
        assert cache.compilation_cache_dir() is None
