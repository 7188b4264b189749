"""The per-user cache directory, and JAX's persistent compilation cache inside it.

One directory holds what socjax builds once per machine: the native kernels' libraries
(`socjax.native.build`) and, in its `xla/` folder, JAX's persistent compilation cache, so a second
`socjax analyze` or `socjax train` of the same shapes loads its compiled programs instead of
compiling them again (JAX keys each entry on the program, the compile options, the backend and the
jax/jaxlib versions, so a change of any of them compiles afresh).

Environment:
  SOCJAX_CACHE          the directory (default $XDG_CACHE_HOME/socjax, else ~/.cache/socjax)
  SOCJAX_COMPILE_CACHE  0, off, false or no: do not use the compilation cache (default: use it)

The cache is trusted like any code: anyone who can write to it can run code in the processes that
read it (JAX's documentation), so it lives in the user's own directory.
"""

from __future__ import annotations

import os
from pathlib import Path

MIN_COMPILE_SECONDS = 0.1  # programs that compile faster than this are not worth a file
_OFF = ("0", "off", "false", "no")


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
    return path
