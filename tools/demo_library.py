"""A freshly rendered demo library indexed by the engine on the demo model, for the evaluation tools
(tools/eval_topics.py, tools/eval_hybrid.py): ``with indexed_demo_library(videos, seed) as (client,
videos_dir, truth): ...``. Everything (videos, workspace, the engine) goes away when the block ends."""

from __future__ import annotations

import socket
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tools"))

from make_demo_videos import main as make_demo_videos  # noqa: E402

from clipseek.api.client import ClipseekClient  # noqa: E402
from clipseek.engine.serve import BackgroundFlow, ServeSettings  # noqa: E402
from clipseek.errors import ClipseekError  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def indexed_demo_library(videos: int, seed: int) -> Iterator[tuple[ClipseekClient, Path, dict]]:
    """(client, the videos' folder, their truth) for ``videos`` demo videos drawn with ``seed``, all
    indexed; ClipseekError naming the files when indexing fails."""
    with tempfile.TemporaryDirectory(prefix="clipseek-demo-library-") as folder:
        videos_dir = Path(folder) / "videos"
        truth = make_demo_videos([str(videos_dir), "--videos", str(videos), "--seed", str(seed), "--quiet"])
        overrides = {"model": "demo", "pretrained": None, "media_roots": [str(videos_dir)],
                     "workspace": str(Path(folder) / "ws")}
        with BackgroundFlow(ServeSettings(grpc_port=free_port(), http_port=free_port()), overrides) as flow:
            client = ClipseekClient(flow.http)
            report = client.index([str(videos_dir)])
            if report.failed:
                raise ClipseekError(f"indexing failed: {[(o.path, o.error) for o in report.failed]}")
            yield client, videos_dir, truth
