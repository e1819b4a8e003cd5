"""The supervisor on its own, with small Python processes instead of the engine's: a failed start, a
start that times out, a restart and the limit, and a process that ignores SIGTERM (it is killed, and
what it started with it)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
from procs import alive

from clipseek.engine.supervisor import EngineError, ProcessSpec, Supervisor


def python(name: str, code: str, ready=lambda: True) -> ProcessSpec:
    return ProcessSpec(name, [sys.executable, "-c", code], ready)


def supervisor(*specs: ProcessSpec, restart_limit: int = 0, stop_timeout_s: float = 5.0, **kwargs) -> Supervisor:
    return Supervisor([list(specs)], start_timeout_s=kwargs.pop("start_timeout_s", 30.0),
                      stop_timeout_s=stop_timeout_s, restart_limit=restart_limit, **kwargs)


def test_a_process_that_exits_while_starting_fails_the_start_with_its_last_lines():
    engine = supervisor(python("broken", "print('cannot find the weights'); raise SystemExit(3)", lambda: False),
                        python("fine", "import time; time.sleep(60)"))
    try:
        with pytest.raises(EngineError, match="broken: exited with code 3 while starting") as failed:
            engine.start()
        assert "cannot find the weights" in failed.value.tail
    finally:
        engine.stop()
    assert all(child.exit_code() is not None for child in engine.children)


def test_a_process_not_ready_in_time_fails_the_start():
    engine = supervisor(python("slow", "import time; time.sleep(60)", lambda: False), start_timeout_s=1.0)
    try:
        with pytest.raises(EngineError, match="slow: not ready 1 s after it was started"):
            engine.start()
    finally:
        engine.stop()


def test_a_process_that_dies_is_restarted_until_the_limit(caplog):
    engine = supervisor(python("flaky", "import time; time.sleep(0.3)"), restart_limit=2)
    try:
        assert engine.start()
        started = time.monotonic()
        with pytest.raises(EngineError, match=r"flaky: exited with code 0 while serving, after 2 restart\(s\)"):
            engine.serve()
        assert time.monotonic() - started < 10
    finally:
        engine.stop()
    assert caplog.text.count("flaky exited with code 0 while serving; restarting it") == 2


def test_a_ready_process_that_dies_while_another_still_starts_is_noticed(tmp_path):
    """The gateway of a stage may be ready later than an executor; an executor that dies meanwhile is not
    forgotten (the start would otherwise wait on a gateway that can never be ready)."""
    flag = tmp_path / "gateway-ready"
    engine = supervisor(python("echo", "import time; time.sleep(0.5)"),
                        python("gateway", "import time; time.sleep(60)", flag.exists), restart_limit=0)
    try:
        started = time.monotonic()
        with pytest.raises(EngineError, match=r"echo: exited with code 0 while serving, after 0 restart\(s\)"):
            engine.start()
        assert time.monotonic() - started < 10
    finally:
        engine.stop()


def test_a_process_that_ignores_sigterm_is_killed_with_what_it_started(tmp_path):
    grandchild = tmp_path / "grandchild.pid"
    code = ("import signal, subprocess, sys, time\n"
            "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            f"child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
            f"open({str(grandchild)!r}, 'w').write(str(child.pid))\n"
            "time.sleep(60)\n")
    engine = supervisor(python("stubborn", code, ready=grandchild.exists), stop_timeout_s=1.0)
    assert engine.start()
    pids = {engine.children[0].process.pid, int(Path(grandchild).read_text())}
    started = time.monotonic()
    assert engine.stop() == ["stubborn"]
    assert time.monotonic() - started < 3
    deadline = time.monotonic() + 2
    while alive(pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(pids)
