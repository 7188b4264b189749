"""The per-user cache directory, and JAX's persistent compilation cache inside it.

One directory holds what socjax builds once per machine: the native kernels' libraries
(`socjax.native.build`) and, in its `xla/` folder, JAX's persistent compilation cache, so a second
`socjax analyze` or `socjax train` of the same shapes loads its compiled programs instead of
compiling them again (JAX keys each entry on the program, the compile options, the backend and the
jax/jaxlib versions, so a change of any of them compiles afresh). Beside it, `traces/` keeps the
traced programs of the analysis's large compiled functions (`persistent`, through `jax.export`):
tracing them costs seconds per shape in every process, more than loading their compiled code, so a
second process reads the trace instead (keyed on socjax's own source, the jax version, the
argument shapes and the static arguments).

Environment:
  SOCJAX_CACHE          the directory (default $XDG_CACHE_HOME/socjax, else ~/.cache/socjax)
  SOCJAX_COMPILE_CACHE  0, off, false or no: use neither the compilation cache nor the traces
                        (default: use both)

The cache is trusted like any code: anyone who can write to it can run code in the processes that
read it (JAX's documentation), so it lives in the user's own directory.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from functools import partial
from pathlib import Path
from typing import Callable

MIN_COMPILE_SECONDS = 0.1  # programs that compile faster than this are not worth a file
_OFF = ("0", "off", "false", "no")
_traces: Path | None = None  # where `persistent` keeps traces; set by enable_compilation_cache


def cache_dir() -> Path:
    if os.environ.get("SOCJAX_CACHE"):
        return Path(os.environ["SOCJAX_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "socjax"


def compilation_cache_dir() -> Path | None:
    """Where the compilation cache is (cache_dir()/xla), or None when SOCJAX_COMPILE_CACHE turns it off."""
    if os.environ.get("SOCJAX_COMPILE_CACHE", "").strip().lower() in _OFF:
        return None
    return cache_dir() / "xla"


def enable_compilation_cache() -> Path | None:
    """Point JAX's persistent compilation cache at `compilation_cache_dir()` (call before the
    first compilation; the command line does). Returns the directory, or None when turned off.
    A directory that cannot be created leaves the cache off: compiling is slower, never wrong."""
    path = compilation_cache_dir()
    if path is None:
        return None
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    import jax

    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    global _traces
    _traces = cache_dir() / "traces"
    return path


_source_digest: str | None = None


def _source() -> str:
    """A digest of socjax's own Python source: a changed program is traced afresh."""
    global _source_digest
    if _source_digest is None:
        h = hashlib.sha256()
        root = Path(__file__).resolve().parent
        for f in sorted(root.rglob("*.py")):
            h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes())
        _source_digest = h.hexdigest()
    return _source_digest


class persistent:
    """`jax.jit(fn, static_argnames=static)` whose traced program is kept on disk
    (`jax.export`) once the compilation cache is on (`enable_compilation_cache`): a process that
    finds the trace of the same source, jax version, shapes, dtypes and static arguments
    deserialises it instead of tracing fn again, then compiles it (from the compilation cache).
    Without the cache, without `flatbuffers` (export's serialisation), or when a file cannot be
    read or written, it is the plain jit. fn's outputs must be arrays, tuples or NamedTuples
    registered with `jax.export.register_namedtuple_serialization`."""

    def __init__(self, fn: Callable, static_argnames: tuple[str, ...] = ()):
        self.fn, self.static = fn, tuple(static_argnames)
        import jax

        self.jitted = jax.jit(fn, static_argnames=self.static)
        self.name = f"{fn.__module__}.{fn.__qualname__}"
        self.loaded: dict = {}

    def __call__(self, *args, **static):
        if _traces is None:
            return self.jitted(*args, **static)
        import jax

        leaves, tree = jax.tree_util.tree_flatten(args)
        shapes = tuple((tuple(jax.numpy.shape(x)), str(jax.numpy.result_type(x))) for x in leaves)
        key = repr((self.name, _source(), jax.__version__, jax.config.jax_enable_x64, jax.default_backend(),
                    str(tree), shapes, sorted(static.items())))
        call = self.loaded.get(key)
        if call is None:
            call = self.loaded[key] = self._load(key, args, static)
        return call(*args)

    def _load(self, key: str, args, static) -> Callable:
        import jax
        from jax import export

        # one folder per version of the source, so an old version's traces can be removed whole
        path = _traces / _source()[:16] / (hashlib.sha256(key.encode()).hexdigest() + ".bin")
        try:
            exported = export.deserialize(bytearray(path.read_bytes()))
        except Exception:  # no file, no flatbuffers, or a damaged or foreign file: trace afresh (and overwrite it)
            exported = None
        if exported is None:
            try:
                exported = export.export(jax.jit(partial(self.fn, **static)))(*args)
                blob = exported.serialize()
            except ImportError:  # no flatbuffers: the plain jit
                return partial(self.jitted, **static)
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as f:
                    f.write(blob)
                os.replace(f.name, path)
            except OSError:
                pass
        return jax.jit(exported.call)
