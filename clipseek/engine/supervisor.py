"""Running a set of processes as one service: start them in order and wait until each serves, fail
fast when one cannot start, restart one that dies while serving, stop them all.

No jina in here. Each process runs in a session of its own (a signal to it reaches the programs it
started too) and is expected to die with the supervisor (``clipseek.service.exit_with_parent``: the
supervisor's pid is passed as ``--parent-pid``), so even a SIGKILL of the supervisor leaves nothing
behind. Their output is passed on, each line prefixed with the process's name, and the last lines of
each are kept to explain a failure.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TextIO

from clipseek.errors import ClipseekError

logger = logging.getLogger("clipseek.engine.serve")

POLL_S = 0.2
TAIL_LINES = 40
RESTART_WINDOW_S = 600.0  # restarts of one process are counted over this long


class EngineError(ClipseekError):
    """A process of the engine could not start, or died and could not be brought back."""

    def __init__(self, name: str, message: str, tail: str = ""):
        self.name = name
        self.tail = tail
        super().__init__(f"{name}: {message}" + (f"\n--- last lines of {name} ---\n{tail}" if tail else ""))


@dataclass
class ProcessSpec:
    """One process: its command line (``--parent-pid`` is added), extra environment, and a check that
    says True once it serves."""

    name: str
    argv: list[str]
    ready: Callable[[], bool]
    env: dict[str, str] = field(default_factory=dict)


class Child:
    """A running process of a ProcessSpec, its output read by a thread."""

    def __init__(self, spec: ProcessSpec, output: TextIO, output_lock: threading.Lock):
        self.spec = spec
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self.restarts: deque[float] = deque()
        self.started_at = 0.0
        self.ready = False
        self.process: subprocess.Popen | None = None
        self._output, self._output_lock = output, output_lock
        self._reader: threading.Thread | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    def start(self) -> None:
        env = {**os.environ, **self.spec.env}
        self.process = subprocess.Popen([*self.spec.argv, "--parent-pid", str(os.getpid())], env=env,
                                        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        self.started_at, self.ready = time.monotonic(), False
        self._reader = threading.Thread(target=self._read, args=(self.process.stdout,), daemon=True,
                                        name=f"output-{self.name}")
        self._reader.start()

    def _read(self, stream) -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip()
            self.tail.append(line)
            with self._output_lock:
                try:
                    self._output.write(f"{self.name} | {line}\n")
                    self._output.flush()
                except (OSError, ValueError):  # our own output went away: keep reading, keep the tail
                    pass
        stream.close()

    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def signal(self, sig: int) -> None:
        """``sig`` to the process and everything it started (its session's process group)."""
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, sig)
        except ProcessLookupError:
            pass

    def last_lines(self, lines: int = 15) -> str:
        if self._reader is not None:
            self._reader.join(timeout=1.0)  # the lines it wrote just before it died
        return "\n".join(list(self.tail)[-lines:])


class Supervisor:
    """Starts ``stages`` (lists of processes; a stage starts once every process of the one before serves).

    ``should_stop()`` is polled while starting and serving (a signal handler sets it). A process that dies
    while serving is restarted, at most ``restart_limit`` times in RESTART_WINDOW_S; then, or when a
    process exits or is not ready ``start_timeout_s`` after it was started, EngineError is raised.
    """

    def __init__(self, stages: Sequence[Sequence[ProcessSpec]], start_timeout_s: float, stop_timeout_s: float,
                 restart_limit: int, should_stop: Callable[[], bool] = lambda: False,
                 output: TextIO | None = None):
        lock = threading.Lock()
        self.stages = [[Child(spec, output or sys.stdout, lock) for spec in stage] for stage in stages]
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.restart_limit = restart_limit
        self.should_stop = should_stop
        self.parent_pid = os.getppid()

    @property
    def children(self) -> list[Child]:
        return [child for stage in self.stages for child in stage]

    def _stopping(self) -> bool:
        """Asked to stop, or the process that started us is gone (it was killed: we go too)."""
        return self.should_stop() or os.getppid() != self.parent_pid

    def start(self) -> bool:
        """Start every stage; False when asked to stop meanwhile. Raises EngineError."""
        for stage in self.stages:
            for child in stage:
                child.start()
            while not all(child.ready for child in stage):
                if self._stopping():
                    return False
                for child in self.children:
                    if child.process is not None:  # this stage's and those before
                        self._check(child)
                time.sleep(POLL_S)
        return True

    def _check(self, child: Child) -> None:
        """Restart ``child`` if it died after it was ready (while its stage waits for the others too), fail
        if it died before; else see whether it is ready yet."""
        code = child.exit_code()
        if code is not None and child.ready:
            self._restart(child, code)
        else:
            self._check_starting(child)

    def _check_starting(self, child: Child) -> None:
        if child.ready:
            return
        code = child.exit_code()
        if code is not None:
            raise EngineError(child.name, f"exited with code {code} while starting", child.last_lines())
        if time.monotonic() - child.started_at > self.start_timeout_s:
            raise EngineError(child.name, f"not ready {self.start_timeout_s:.0f} s after it was started "
                                          f"(CLIPSEEK_START_TIMEOUT_S)", child.last_lines())
        child.ready = child.spec.ready()
        if child.ready:
            logger.info("%s is ready (%.1f s)", child.name, time.monotonic() - child.started_at)

    def serve(self) -> None:
        """Watch the processes until asked to stop; restart one that dies. Raises EngineError."""
        while not self._stopping():
            for child in self.children:
                self._check(child)
            time.sleep(POLL_S)

    def _restart(self, child: Child, code: int) -> None:
        now = time.monotonic()
        while child.restarts and now - child.restarts[0] > RESTART_WINDOW_S:
            child.restarts.popleft()
        how = f"signal {signal.Signals(-code).name}" if code < 0 else f"code {code}"
        if len(child.restarts) >= self.restart_limit:
            raise EngineError(child.name, f"exited with {how} while serving, after {len(child.restarts)} restart(s) "
                                          f"in {RESTART_WINDOW_S / 60:.0f} min (CLIPSEEK_RESTART_LIMIT="
                                          f"{self.restart_limit}): giving up", child.last_lines())
        child.restarts.append(now)
        logger.warning("%s exited with %s while serving; restarting it (%d of %d restarts in %.0f min)",
                     child.name, how, len(child.restarts), self.restart_limit, RESTART_WINDOW_S / 60)
        child.start()

    def stop(self, urgent: Callable[[], bool] = lambda: False) -> list[str]:
        """SIGTERM to every process, SIGKILL to those still running ``stop_timeout_s`` later (or at once when
        ``urgent()`` turns true). Returns the names of those that had to be killed."""
        running = [child for child in self.children if child.process is not None and child.exit_code() is None]
        for child in reversed(running):  # the gateway first: no new requests while the executors stop
            child.signal(signal.SIGTERM)
        started = time.monotonic()
        deadline = started + self.stop_timeout_s
        waiting = list(running)
        while waiting and time.monotonic() < deadline and not urgent():
            time.sleep(POLL_S / 2)
            for child in [c for c in waiting if c.exit_code() is not None]:
                waiting.remove(child)
                logger.info("%s stopped (%.1f s)", child.name, time.monotonic() - started)
        killed = [child.name for child in running if child.exit_code() is None]
        for child in running:
            child.signal(signal.SIGKILL)
        for child in running:
            if child.process is not None:
                child.process.wait()
        if killed:
            logger.warning("killed %s: still running %.0f s after SIGTERM", ", ".join(killed), self.stop_timeout_s)
        return killed
