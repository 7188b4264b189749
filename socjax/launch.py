"""`socjax launch --processes N -- train ...`: a job of N local processes, as a cluster launcher
(srun, mpirun) would start it, for tests and for a many-core workstation.

The launcher picks a free port on 127.0.0.1 and runs JAX's coordination service there itself
(`distributed.serve`; under srun or mpirun process 0 hosts it, and its death ends the others),
so that the loss of any process, process 0 included, stops the others cleanly. It starts N copies
of the command with --coordinator, --num-processes and --process-id added, each in a session of
its own (a Ctrl-C reaches the launcher alone, which forwards it, so
every process gets one signal however it was sent), optionally pinned to its own group of cores,
and waits for all. SIGINT and SIGTERM are forwarded to every process still running; each stops
after its chunk in flight and keeps its checkpoint. The exit status is the worst of the processes'
(a process ended by signal k counts as 128 + k), and a process that a signal the launcher did not
forward ended is named.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from socjax.config import ConfigError
from socjax.interrupt import StopSignal


def core_groups(processes: int, per_process: int) -> list[list[int]]:
    """`per_process` of this process's cores for each of `processes`, in order; ConfigError when
    there are too few."""
    cores = sorted(os.sched_getaffinity(0))
    if processes * per_process > len(cores):
        raise ConfigError(f"--cpus-per-process {per_process} x {processes} processes needs {processes * per_process} "
                          f"cores; this process may use {len(cores)}")
    return [cores[i * per_process : (i + 1) * per_process] for i in range(processes)]


def command(args: list[str], port: int, processes: int, index: int) -> list[str]:
    """Process `index`'s command line: socjax with `args` and its place in the job."""
    return [sys.executable, "-m", "socjax", *args, "--coordinator", f"127.0.0.1:{port}",
            "--num-processes", str(processes), "--process-id", str(index)]


def _heartbeat(args: list[str]) -> int:
    """The job's --heartbeat-seconds as train reads it (the service's limit must be the
    processes' own); the rest of the command is the processes' to check."""
    import argparse

    from socjax.distributed import HEARTBEAT_SECONDS

    p = argparse.ArgumentParser(add_help=False, exit_on_error=False)
    p.add_argument("--heartbeat-seconds")
    try:
        value = p.parse_known_args(args)[0].heartbeat_seconds
    except argparse.ArgumentError:  # no value: the processes refuse it themselves
        value = None
    return int(value) if value is not None and value.isdigit() else HEARTBEAT_SECONDS


def launch(args: list[str], processes: int, stop: StopSignal, cpus_per_process: int | None = None) -> int:
    """Run `socjax ARGS` as a job of `processes` local processes; their worst exit status."""
    if not args or args[0] != "train":
        raise ConfigError(f"socjax launch runs train: socjax launch --processes N -- train ... (got {' '.join(args)!r})")
    for flag in ("--coordinator", "--num-processes", "--process-id"):
        if any(a == flag or a.startswith(flag + "=") for a in args):
            raise ConfigError(f"socjax launch sets {flag} itself; remove it")
    cores = core_groups(processes, cpus_per_process) if cpus_per_process else None
    from socjax import distributed

    port = distributed.free_port()
    service = distributed.serve(f"127.0.0.1:{port}", processes, _heartbeat(args))
    env = {**os.environ, distributed.SERVED: "1"}
    children = []
    for i in range(processes):
        pin = (lambda c=cores[i]: os.sched_setaffinity(0, c)) if cores else None
        children.append(subprocess.Popen(command(args, port, processes, i), start_new_session=True, preexec_fn=pin,
                                         env=env))
    forwarded = None
    while any(c.poll() is None for c in children):
        if stop.requested and forwarded is None:
            forwarded = signal.Signals[stop.name] if stop.name in signal.Signals.__members__ else signal.SIGTERM
            for c in children:
                if c.poll() is None:
                    c.send_signal(forwarded)
        time.sleep(0.05)
    service.shutdown()
    codes = []
    for i, c in enumerate(children):
        code = c.returncode
        if code < 0:
            if forwarded is None or -code != forwarded:
                print(f"socjax launch: process {i} was ended by {signal.Signals(-code).name}", file=sys.stderr)
            code = 128 - code
        codes.append(code)
    if stop.requested:
        stop.requested = False  # forwarded: each process said what it kept
    return max(codes)
