"""One sweep over many processes and hosts, on JAX's multi-controller runtime (`jax.distributed`).

Every process of the job runs the same `socjax train` command. `initialize` starts JAX's
distributed runtime from --coordinator HOST:PORT --num-processes N --process-id I, or, under a
cluster launcher (srun, mpirun: `launched_processes`), from the launcher's environment, which JAX
reads itself (SLURM, Open MPI). The sweep's R runs are laid over the global device list (every
process's devices, in process order: a mesh with one axis, "runs"): device k of D holds runs
[k R / D, (k + 1) R / D) (`shards`), so each process holds a contiguous block of the sweep's runs,
in the sweep's order, and trains those alone, vmapped over its own devices as a single process
does. The training step has no collective: the processes never wait for each other while they
train, and the native step works inside each. Every run's numbers depend on its own seed, lr and
l2 only, so a sharded sweep equals the same sweep in one process, bit for bit.

Each process writes its block as a run directory of its own, DIR/shards/{i}, with its own lock,
checkpoints and progress; process 0 also writes DIR/config.json (the sweep and which process holds
which runs) and DIR/tracked.json (`rundir`). The processes meet through the runtime's key-value
store (`Group.agree`): before anything is written (process 0 checks DIR), and once each has
started (data, state and compiled programs ready), so that a failed start-up anywhere leaves
nothing anywhere. Then each trains alone. Under srun, mpirun or the flags, process 0 hosts the
runtime's coordination service, so it waits for every other process to end before it exits (an
exit would end them), and asks them to stop after their chunk in flight when it ends early
itself; under `socjax launch` the launcher hosts it (`serve`).

Faults: `Group.watch` polls the runtime's list of live processes (its heartbeats, every
`heartbeat` seconds). A process gone without saying it ended (SIGKILL, a lost node) stops the
others after their chunk in flight, each keeping its checkpoint and naming the lost process;
rerunning the same command with `train --resume DIR` resumes every shard where its checkpoint
left it. When process 0 dies where it hosts the coordination service, the service dies with it and
JAX ends the others at once (SIGABRT: "the JAX distributed service detected fatal errors"); their
last checkpoints are intact all the same, as after any crash.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import socket
import threading
import time
from pathlib import Path
from typing import Iterator

from socjax import rundir
from socjax.config import ConfigError, RunConfig
from socjax.interrupt import StopSignal

HEARTBEAT_SECONDS = 30  # DEFAULT: a process without a heartbeat for this long is lost (JAX's default: 100)
POLL_SECONDS = 0.2  # how often a waiting process looks at the key-value store
# launchers and the environment variable each sets to the number of processes it started
LAUNCHERS = (("srun", "SLURM_STEP_NUM_TASKS"), ("mpirun", "OMPI_COMM_WORLD_SIZE"))


class PeerError(ConfigError):
    """Another process of the job could not go on (quiet: that process says why itself) or was lost."""

    def __init__(self, message: str, quiet: bool = False):
        super().__init__(message)
        self.quiet = quiet


def launched_processes(environ=os.environ) -> int:
    """How many processes a cluster launcher started this one among (1: none, or a job of one),
    read from the variables srun (SLURM_STEP_NUM_TASKS) and mpirun (OMPI_COMM_WORLD_SIZE) set."""
    for _, var in LAUNCHERS:
        value = environ.get(var, "")
        if value.isdigit() and int(value) > 1:
            return int(value)
    return 1


def check_flags(coordinator: str | None, num_processes: int | None, process_id: int | None) -> bool:
    """Whether the flags ask for a job of several processes (all three given) or not (none);
    ConfigError (one line) for anything between or out of range."""
    given = [v is not None for v in (coordinator, num_processes, process_id)]
    if not any(given):
        return False
    if not all(given):
        raise ConfigError("--coordinator, --num-processes and --process-id go together (or none: one process, "
                          "or a cluster launcher's)")
    if not re.fullmatch(r"[^\s:]+:\d{1,5}", coordinator) or not 0 < int(coordinator.rsplit(":", 1)[1]) < 65536:
        raise ConfigError(f"--coordinator must be HOST:PORT, got {coordinator!r}")
    if num_processes < 1:
        raise ConfigError(f"--num-processes must be >= 1, got {num_processes}")
    if not 0 <= process_id < num_processes:
        raise ConfigError(f"--process-id must be in 0..{num_processes - 1}, got {process_id}")
    return True


def shards(num_runs: int, devices_per_process: list[int]) -> list[tuple[int, int]]:
    """The runs [start, stop) of each process: the R runs laid over the D devices of all processes
    in order (device k: runs [k R / D, (k + 1) R / D)), each process taking its devices' runs.
    ConfigError when a process would get none."""
    total = sum(devices_per_process)
    out, first = [], 0
    for count in devices_per_process:
        out.append((first * num_runs // total, (first + count) * num_runs // total))
        first += count
    if any(a == b for a, b in out):
        raise ConfigError(f"{len(devices_per_process)} processes ({total} devices) for {num_runs} run(s): every "
                          "process needs at least one run; use fewer processes or more seeds or settings")
    return out


class Group:
    """This process's place in the job (`index` of `count`) and the runtime's client: the
    key-value store the processes meet through, and the list of live processes."""

    def __init__(self, index: int, count: int, client, heartbeat: int):
        self.index, self.count, self.client, self.heartbeat = index, count, client, heartbeat

    def _key(self, stage: str, index: int | None = None) -> str:
        return f"socjax/{stage}" + ("" if index is None else f"/{index}")

    def _entries(self, stage: str) -> dict[int, str]:
        return {int(k.rsplit("/", 1)[1]): v for k, v in self.client.key_value_dir_get(self._key(stage) + "/")}

    def lost(self) -> list[int]:
        """The processes gone from the runtime (no heartbeat) without having said they ended."""
        alive = self.client.get_live_nodes(list(range(self.count)))
        ended = self._entries("end")
        return [k for k in range(self.count) if k not in alive and k not in ended]

    def agree(self, stage: str, problem: str | None, stop: StopSignal) -> None:
        """Meet every other process at `stage`, saying whether this one can go on (problem: why
        not, else None); PeerError when another cannot, or is lost meanwhile. A signal while
        waiting stops the wait (Interrupted)."""
        self.client.key_value_set(self._key(stage, self.index), json.dumps(problem))
        if problem is not None:
            return  # the others stop on it; this one says it
        while True:
            lost = self.lost()  # before what was said: one that said it can go on, then died, is no loss here
            said = self._entries(stage)
            others = {k: json.loads(v) for k, v in said.items() if k != self.index}
            failed = sorted(k for k, p in others.items() if p is not None)
            if failed:
                raise PeerError(f"process {failed[0]} could not go on: {others[failed[0]]}", quiet=True)
            if len(said) == self.count:
                return
            lost = [k for k in lost if k not in said]
            if lost:
                raise PeerError(f"process {lost[0]} was lost (no heartbeat for {self.heartbeat} s) at {stage}")
            stop.check()
            time.sleep(POLL_SECONDS)

    def end(self, outcome: str) -> list[str]:
        """Say that this process has ended (`outcome`: "done" or why not), so that its exit is not
        taken for a loss. Process 0 first asks the others to stop if it ended early, then waits
        for every other process to end (its exit would end them): their outcomes, as lines, for
        those that did not finish; a lost one is named."""
        self.client.key_value_set(self._key("end", self.index), outcome)
        if self.index != 0:
            return []
        if outcome != "done":
            self.client.key_value_set(self._key("stop", 0), f"process 0 ending early ({outcome})")
        problems = []
        while True:
            ended, lost = self._entries("end"), self.lost()
            if len(ended) + len(lost) == self.count:
                problems += [f"process {k} was lost (no heartbeat for {self.heartbeat} s)" for k in lost]
                problems += [f"process {k}: {v}" for k, v in sorted(ended.items()) if v != "done" and k != 0]
                return problems
            time.sleep(POLL_SECONDS)

    @contextlib.contextmanager
    def watch(self, stop: StopSignal) -> Iterator[None]:
        """While the block runs, a thread that looks every second and stops this process
        (`stop.request`, after its chunk in flight) when another is lost, or when process 0 asks."""
        done = threading.Event()

        def look():
            while not done.wait(1.0):
                try:
                    lost = self.lost()
                    asked = self._entries("stop").get(0)
                except Exception:  # the runtime is going away: JAX says so itself
                    return
                if lost:
                    return stop.request(f"the loss of process {lost[0]} (no heartbeat for {self.heartbeat} s)")
                if asked and self.index:
                    return stop.request(asked)

        thread = threading.Thread(target=look, name="socjax-watch", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()


SERVED = "SOCJAX_COORDINATOR_SERVED"  # set by `socjax launch`: the coordination service runs in the launcher


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (the OS's choice)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(address: str, count: int, heartbeat: int):
    """JAX's coordination service for a job of `count` processes at `address`, in this process
    (`socjax launch`, so that it outlives any of them); keep the returned object alive, and call
    its shutdown() once they have all ended."""
    from jax._src.lib import _jax  # the service itself has no public spelling

    return _jax.get_distributed_runtime_service(address, count, heartbeat_timeout=heartbeat, shutdown_timeout=5,
                                               recoverable=True)


def initialize(coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None,
               heartbeat: int = HEARTBEAT_SECONDS) -> Group:
    """Start JAX's distributed runtime (before anything else uses JAX) and join the job: from the
    flags, or with none from a cluster launcher's environment. Recoverable: a process that dies
    does not end the others (as JAX's default would: SIGABRT), which see it in `Group.lost` and
    stop on their own. Under `socjax launch` (SERVED) the coordination service is the launcher's,
    and process 0's own, which JAX always starts, listens on a port nothing uses."""
    import jax
    from jax._src import distributed as _distributed

    jax.config.update("jax_enable_recoverability", True)
    bind = None
    if os.environ.get(SERVED) == "1" and process_id == 0:
        bind = f"127.0.0.1:{free_port()}"
    jax.distributed.initialize(coordinator, num_processes, process_id, heartbeat_timeout_seconds=heartbeat,
                               coordinator_bind_address=bind)
    # the key-value store and the live list are the runtime client's (no public spelling yet)
    return Group(jax.process_index(), jax.process_count(), _distributed.global_state.client, heartbeat)


def devices_per_process(count: int) -> list[int]:
    import jax

    return [sum(d.process_index == p for d in jax.devices()) for p in range(count)]


def _layout(cfg: RunConfig, out: Path, group: Group, resume: bool, check: bool = False) -> list[tuple[int, int]]:
    """The runs of each process: the run directory's own on resume (refusing a directory trained
    by another number of processes), else laid over the devices (`shards`); check: DIR is new."""
    if not resume:
        bounds = shards(len(cfg.runs()), devices_per_process(group.count))
        if check:
            rundir.check_new(out)
        return bounds
    recorded = rundir.read_shards(out)
    if recorded is None:
        raise rundir.RunDirError(f"{out}: trained by one process; resume it with one (socjax train --resume {out})")
    if len(recorded) != group.count:
        raise rundir.RunDirError(f"{out}: trained by {len(recorded)} processes; resume it with as many (this job has "
                                 f"{group.count}): each shard keeps its runs")
    return recorded


def train(cfg: RunConfig, out: str | Path, group: Group, *, progress: bool, resume: bool, stop: StopSignal,
          checkpoint_epochs: int | None = None, checkpoint_minutes: float = 10.0) -> tuple[Path, list[str]]:
    """This process's shard of the sweep `cfg` (the whole sweep's configuration) in the sharded
    run directory `out`: `runner.run` on DIR/shards/{index}, meeting the other processes before
    anything is written and once all have started. Returns (out, the other processes' problems:
    lines, process 0 only). Raises as `runner.run` does; PeerError when another process failed
    its start-up or was lost during it."""
    from socjax import runner

    out = Path(out)
    hint = f"rerun the same command with train --resume {out} (every process)"
    said = False  # whether this process has said at "started" whether it can go on

    def ready(start) -> None:
        nonlocal said
        said = True
        group.agree("started", None, stop)
        if group.index == 0:  # the whole sweep, with the step as resolved (`step.choose`)
            whole = dataclasses.replace(start.cfg, shard=None)
            rundir.write_sharded(out, whole, dict(start.layout, num_runs=len(cfg.runs())), start.source,
                                 start.tracked, bounds)

    outcome = "done"
    try:  # from here to the end, every process says how it ended (`Group.end`), and process 0 waits for all
        problem = bounds = None
        if group.index == 0:  # one process checks, and says what it found, once
            try:
                bounds = _layout(cfg, out, group, resume, check=True)
            except ConfigError as e:
                problem = str(e)
        group.agree("checked", problem, stop)  # every process: none goes on alone
        if problem is not None:
            raise ConfigError(problem)
        bounds = bounds or _layout(cfg, out, group, resume)
        shard = dataclasses.replace(cfg, shard=bounds[group.index])
        with group.watch(stop):
            runner.run(shard, rundir.shard_dir(out, group.index), progress=progress and group.index == 0,
                       resume=resume, checkpoint_epochs=checkpoint_epochs, checkpoint_minutes=checkpoint_minutes,
                       stop=stop, ready=ready, resume_hint=hint)
    except BaseException as e:
        outcome = f"{type(e).__name__}: {e}"
        if not said:  # the others may wait at "started" for this one: release them
            with contextlib.suppress(Exception):
                group.agree("started", outcome, stop)
        raise
    finally:
        problems = group.end(outcome)
        if group.index == 0 and not (out / rundir.CONFIG).exists():
            for d in (out / rundir.SHARDS, out):  # a set-up that failed somewhere: the empty directories it left
                with contextlib.suppress(OSError):
                    d.rmdir()
    return out, problems
