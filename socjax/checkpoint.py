"""Checkpoint files: any pytree of arrays (a TrainState) with metadata, saved leaf by leaf and
restored against a template of the same structure, so a new state field costs nothing here.

An .npz written to a file object (socjax.rundir decides where, and writes it safely):

    leaf_0 ... leaf_{n-1}   the tree's leaves in jax.tree order; typed PRNG keys as their key data
    __meta__                JSON: {"format": FORMAT, "socjax": version, "jax": version,
                            "paths": [keystr of each leaf], "keys": {leaf index: PRNG impl name},
                            "user": the caller's metadata}

`read` takes a template with the tree's structure, shapes and dtypes (jax.eval_shape of the initial
state: nothing is computed) and refuses, in one line, a file of another format or a file whose
leaves do not match it. (orbax-checkpoint does the same for sharded pytrees across hosts; for a few
MB per run on one host one .npz has no extra dependency.)
"""

from __future__ import annotations

import contextlib
import json
import os
import zipfile
import zlib
from typing import Any, BinaryIO

import jax
import numpy as np

from socjax.config import ConfigError

FORMAT = 2
FORMAT_1 = "format 1 (socjax 0.1.0)"  # the earlier layout: named arrays, no __meta__


class CheckpointError(ConfigError):
    """A checkpoint that cannot be restored into the expected state; one line."""


def _is_key(x) -> bool:
    return jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _this_version() -> str:
    import socjax

    return f"format {FORMAT} (socjax {socjax.__version__}, jax {jax.__version__})"


def save(f: BinaryIO, tree, user: dict[str, Any]) -> None:
    """Write `tree` (device or host arrays) and JSON-able `user` metadata as an .npz into f."""
    import socjax

    paths, leaves = zip(*jax.tree_util.tree_flatten_with_path(tree)[0]) if jax.tree.leaves(tree) else ((), ())
    keys = {i: str(jax.random.key_impl(x)) for i, x in enumerate(leaves) if _is_key(x)}
    leaves = [jax.random.key_data(x) if i in keys else x for i, x in enumerate(leaves)]
    arrays = {f"leaf_{i}": np.asarray(x) for i, x in enumerate(jax.device_get(leaves))}
    meta = dict(format=FORMAT, socjax=socjax.__version__, jax=jax.__version__,
                paths=[jax.tree_util.keystr(p) for p in paths], keys=keys, user=user)
    np.savez(f, **arrays, __meta__=np.asarray(json.dumps(meta)))


# what a truncated, empty, random or foreign file raises somewhere in np.load and zipfile
_UNREADABLE = (OSError, ValueError, EOFError, KeyError, TypeError, AttributeError, zipfile.BadZipFile, zlib.error)


@contextlib.contextmanager
def _readable(name: str):
    """What a damaged file raises inside the block becomes one CheckpointError line."""
    try:
        yield
    except CheckpointError:
        raise
    except _UNREADABLE as e:
        raise CheckpointError(f"{name}: not a readable checkpoint ({type(e).__name__}: {e})") from None


def _opened(f):
    """A path opened here (and closed even when np.load fails on it) or a caller's file object."""
    return open(f, "rb") if isinstance(f, (str, os.PathLike)) else contextlib.nullcontext(f)


def read_meta(f, name: str = "checkpoint") -> dict:
    """The __meta__ of a checkpoint file (format, versions, leaf paths, the caller's "user" data),
    without its arrays; {"format": 1} for the earlier layout."""
    with _readable(name), _opened(f) as fh, np.load(fh) as z:
        return json.loads(str(z["__meta__"])) if "__meta__" in z.files else {"format": 1}


def _check_format(meta: dict, name: str) -> dict:
    if meta.get("format") == 1:
        raise CheckpointError(f"{name}: has no __meta__: not a socjax checkpoint, or written in {FORMAT_1}; "
                              f"this is {_this_version()}: resume it with the socjax that started it")
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{name}: written in format {meta.get('format')} (socjax {meta.get('socjax')}, "
                              f"jax {meta.get('jax')}); this is {_this_version()}")
    return meta


def read_user(f, name: str = "checkpoint") -> dict:
    """The caller's metadata of a checkpoint of this format, without its arrays."""
    return _check_format(read_meta(f, name), name)["user"]


def read(f, template, name: str = "checkpoint"):
    """(tree, user metadata) from a file written by `save`, restored into `template`'s structure
    (host NumPy leaves; typed PRNG keys re-wrapped). `name` labels the one-line errors."""
    with _readable(name):
        return _read(f, template, name)


def _read(f, template, name):
    with _opened(f) as fh, np.load(fh) as z:
        meta = _check_format(json.loads(str(z["__meta__"])) if "__meta__" in z.files else {"format": 1}, name)
        expected, treedef = jax.tree_util.tree_flatten_with_path(template)
        paths = [jax.tree_util.keystr(p) for p, _ in expected]
        if meta["paths"] != paths:
            raise CheckpointError(f"{name}: holds state fields {meta['paths']}, this run expects {paths}")
        leaves = []
        for i, (path, want) in enumerate(zip(paths, (t for _, t in expected))):
            arr = z[f"leaf_{i}"]
            impl = meta["keys"].get(str(i))
            value = jax.random.wrap_key_data(arr, impl=impl) if impl else arr
            if value.shape != want.shape or value.dtype != want.dtype:
                raise CheckpointError(f"{name}: {path} is {value.dtype}{list(value.shape)}, this run expects "
                                      f"{want.dtype}{list(want.shape)}")
            leaves.append(value)
    return jax.tree_util.tree_unflatten(treedef, leaves), meta["user"]
