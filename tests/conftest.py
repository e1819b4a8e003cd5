"""Shared fixtures: synthetic videos, a running Flow on free ports, and a guard against silent errors."""

from __future__ import annotations

import logging
import os
import socket
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from synth import Segment, make_bad_files, make_one_frame, make_tiny, make_video  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
TINY_MODEL = str(REPO / "tests" / "fixtures" / "clipseek-tiny.json")
DEMO_WEIGHTS = REPO / "clipseek" / "demo" / "model" / "clipseek-demo.safetensors"

os.environ.setdefault("JINA_OPTOUT_TELEMETRY", "1")
os.environ.setdefault("JINA_HIDE_SURVEY", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no test may touch the network


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(autouse=True)
def fail_on_logged_errors(caplog):
    """A test that made clipseek log at ERROR fails, so failures cannot pass silently."""
    caplog.set_level(logging.WARNING, logger="clipseek")
    yield
    errors = [r for r in caplog.get_records("call") if r.levelno >= logging.ERROR and r.name.startswith("clipseek")]
    if errors:
        pytest.fail("clipseek logged errors: " + "; ".join(r.getMessage() for r in errors))


# Three colour shots with hard cuts, one of them between two colours of equal brightness
# (0xFF0000 and 0x008200 both have luma ~76), then a moving pattern.
CUT_VIDEO = [
    Segment("0xFF0000", 2.0),
    Segment("0x008200", 1.5),
    Segment("white", 2.5),
    Segment("x", 4.0, source="testsrc2"),
]


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory) -> Path:
    """A media root with synthetic videos, plus every bad file the engine must survive (in bad/)."""
    root = tmp_path_factory.mktemp("media")
    make_video(root / "cuts.mp4", CUT_VIDEO)
    (root / "sub").mkdir()
    make_video(root / "sub" / "blue.mp4", [Segment("blue", 3.0)])
    (root / "bad").mkdir()
    make_bad_files(root / "bad", root / "cuts.mp4")
    make_one_frame(root / "one_frame.mp4")
    make_tiny(root / "tiny.mp4")
    return root


class RunningFlow:
    """The real Flow on free ports, with the given model settings; a context manager."""

    def __init__(self, model: str, pretrained: str, media_roots: str, workspace: Path):
        self.env = {
            "CLIPSEEK_MODEL": model,
            "CLIPSEEK_PRETRAINED": pretrained,
            "CLIPSEEK_MEDIA_ROOTS": media_roots,
            "CLIPSEEK_WORKSPACE": str(workspace),
        }
        self.grpc_port, self.http_port = free_port(), free_port()
        self.flow = None
        self._saved: dict[str, str | None] = {}

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc(self) -> str:
        return f"grpc://127.0.0.1:{self.grpc_port}"

    def __enter__(self) -> RunningFlow:
        from clipseek.serve import ServeSettings, build_flow

        self._saved = {k: os.environ.get(k) for k in self.env}
        os.environ.update(self.env)  # the executor processes inherit the environment
        self.flow = build_flow(ServeSettings(grpc_port=self.grpc_port, http_port=self.http_port))
        self.flow.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.flow.__exit__(*exc)
        finally:
            for key, value in self._saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
