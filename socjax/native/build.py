"""Compiling the native kernels at first use, and registering them with XLA.

`load()` compiles `sgd.cc` with the system C++ compiler into a per-user cache and registers its
handlers as the XLA FFI targets in `TARGETS` on the CPU. The library is keyed on everything that makes
it: the source, the flags, the jaxlib version and the compiler's version line, so an upgrade of
any of them builds a new one. It is written to a temporary file and renamed into place, so
concurrent first uses never see a half-written library. The library does not link jaxlib (the FFI
is header-only: `jax.ffi.include_dir()`).

Environment:
  CXX                  the compiler (default g++)
  SOCJAX_NATIVE_ARCH   the -march target (default x86-64-v3, portable AVX2; "native" uses
                       everything this CPU has, AVX-512 included)
  SOCJAX_CACHE         the cache directory (default $XDG_CACHE_HOME/socjax, else ~/.cache/socjax)

`unavailable()` says in one line why the native step cannot run here, or returns None.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shlex
import subprocess
from pathlib import Path

from socjax.cache import cache_dir

SOURCE = Path(__file__).with_name("sgd.cc")
# FFI target name -> the handler's symbol in the library
TARGETS = {"socjax_sgd_step": "SocjaxSgdStep", "socjax_sgd_step_stats": "SocjaxSgdStepStats"}
DEFAULT_ARCH = "x86-64-v3"
# the CPU features -march=x86-64-v3 code may use, as /proc/cpuinfo names them
_V3_FLAGS = ("avx", "avx2", "fma", "bmi1", "bmi2", "f16c", "movbe")

_loaded: dict[str, object] = {}


class BuildError(RuntimeError):
    """The native kernel cannot be built or loaded here; str() is one line saying why."""


def arch() -> str:
    return os.environ.get("SOCJAX_NATIVE_ARCH", DEFAULT_ARCH)


def compiler() -> str:
    return os.environ.get("CXX", "g++")


def flags() -> list[str]:
    import jax

    return ["-O3", f"-march={arch()}", "-std=c++17", "-shared", "-fPIC", "-pthread", "-fno-math-errno",
            f"-I{jax.ffi.include_dir()}"]


def _check_cpu() -> None:
    machine = platform.machine().lower()
    if machine not in ("x86_64", "amd64"):
        raise BuildError(f"the native step is written for x86-64 CPUs; this one is {machine}")
    if arch() == "native":
        return
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        raise BuildError(f"cannot read /proc/cpuinfo to check the CPU for -march={arch()}") from None
    have = set(next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), []))
    missing = [f for f in _V3_FLAGS if f not in have]
    if missing:
        raise BuildError(f"this CPU lacks {', '.join(missing)} (needed by -march={arch()}); "
                         "try SOCJAX_NATIVE_ARCH=native")


def _compiler_version(cxx: str) -> str:
    try:
        out = subprocess.run([*shlex.split(cxx), "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise BuildError(f"no C++ compiler: {cxx!r} cannot run ({e.__class__.__name__}); set CXX") from None
    if out.returncode != 0 or not out.stdout:
        raise BuildError(f"no C++ compiler: {cxx} --version failed; set CXX")
    return out.stdout.splitlines()[0]


def library() -> Path:
    """The compiled library for the current source, flags, jaxlib and compiler: built if missing."""
    import jaxlib

    _check_cpu()
    cxx = compiler()
    key = hashlib.sha256("\n".join([SOURCE.read_text(), *flags(), jaxlib.__version__, _compiler_version(cxx)])
                         .encode()).hexdigest()[:16]
    path = cache_dir() / f"sgd-{key}.so"
    if path.exists():
        return path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise BuildError(f"cannot create the kernel cache {path.parent}: {e.strerror}") from None
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp")
    cmd = [*shlex.split(cxx), *flags(), "-o", str(tmp), str(SOURCE)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if out.returncode != 0:
            first = next((line for line in out.stderr.splitlines() if "error" in line), out.stderr.strip()[:200])
            raise BuildError(f"compiling the native step failed ({cxx}): {first}")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load() -> None:
    """Build (if needed) and register the FFI targets once per process. Raises BuildError."""
    if "lib" in _loaded:
        return
    import jax

    path = library()
    try:
        lib = ctypes.cdll.LoadLibrary(str(path))
        handlers = {target: getattr(lib, symbol) for target, symbol in TARGETS.items()}
    except (OSError, AttributeError) as e:
        raise BuildError(f"cannot load the native step from {path}: {e}") from None
    for target, handler in handlers.items():
        jax.ffi.register_ffi_target(target, jax.ffi.pycapsule(handler), platform="cpu")
    _loaded["lib"] = lib


def unavailable() -> str | None:
    """None if the native step can run in this process (built and registered), else why not."""
    try:
        load()
    except BuildError as e:
        return str(e)
    return None
