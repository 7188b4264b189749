"""JAX's persistent compilation cache as the command line sets it up (socjax.cache): a second
process running the same analysis loads its programs from the cache (JAX reports hits) and gets
the same numbers; SOCJAX_COMPILE_CACHE=0 turns it off."""

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
import numpy as np
from socjax.analysis import increments, synthetic
fit = increments.fit_distribution(synthetic.hist_blocks(synthetic.sample("paper", np.random.default_rng(0), 20000)))
print(json.dumps(dict(events, where=str(where), gamma=fit["model"]["gamma"], verdicts=fit["model"]["verdicts"])))
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
    assert second["hits"] >= first["misses"] > 0 and second["misses"] == 0, (first, second)
    assert second["gamma"] == first["gamma"] and second["verdicts"] == first["verdicts"]
    off = run({**env, "SOCJAX_COMPILE_CACHE": "off"})
    assert off["where"] == "None" and off["hits"] == 0 and off["misses"] == 0
    assert off["gamma"] == first["gamma"]


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
