"""Shared fixtures: synthetic videos, a running Flow on free ports, and a guard against silent errors."""

from __future__ import annotations

import logging
import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
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


@contextmanager
def indexed_demo_engine(videos: Path, workspace: Path) -> Iterator:
    """The engine on the demo model (a BackgroundFlow on free ports) with ``videos`` as its media folder,
    everything in it indexed."""
    from clipseek.api.client import ClipseekClient
    from clipseek.engine.serve import BackgroundFlow, ServeSettings

    overrides = {"model": "demo", "pretrained": None, "media_roots": [str(videos)], "workspace": str(workspace)}
    with BackgroundFlow(ServeSettings(grpc_port=free_port(), http_port=free_port()), overrides) as flow:
        report = ClipseekClient(flow.http).index([str(videos)])
        assert not report.failed, report.failed
        yield flow


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


def running_flow(model: str, pretrained: str, media_roots: str, workspace: Path, **settings):
    """The real Flow on free ports with these service settings (a context manager)."""
    from clipseek.engine.serve import BackgroundFlow, ServeSettings

    overrides = {"model": model, "pretrained": pretrained, "media_roots": [media_roots],
                 "workspace": str(workspace), **settings}
    return BackgroundFlow(ServeSettings(grpc_port=free_port(), http_port=free_port()), overrides)
