"""The gateway, the loader and the indexer never import torch; the encoders load one tower each; the text
encoder on ONNX Runtime (its default on a CPU) never imports torch either (tests/test_onnx_text.py)."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, TINY_MODEL, running_flow


def run_python(code: str) -> str:
    """Run ``code`` in a fresh interpreter from the repository root; its stdout."""
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_the_services_without_a_model_import_no_torch_when_it_is_kept_out():
    out = run_python(
        "import sys\n"
        "from clipseek.torch_free import keep_torch_out\n"
        "assert keep_torch_out()\n"
        "import jina, docarray\n"
        "import clipseek.engine.serve, clipseek.api.client, clipseek.docs, clipseek.media.hardware\n"
        "from clipseek.engine.services import service_settings\n"
        "service_settings('video_loader'); service_settings('indexer')\n"
        "print(sorted(m for m, v in sys.modules.items() if v is not None and m.split('.')[0] in "
        "('torch', 'torchvision', 'open_clip', 'triton')))\n")
    assert out.strip() == "[]"


def test_a_model_can_still_be_loaded_after_torch_was_kept_out():
    out = run_python(
        "from clipseek.torch_free import keep_torch_out, torch_kept_out\n"
        "keep_torch_out()\n"
        "import docarray\n"
        "from clipseek.model.clip import load_clip\n"
        f"clip = load_clip({TINY_MODEL!r}, 'none', 'cpu', 'fp32', towers='text')\n"
        "print(torch_kept_out(), clip.encode_texts(['a red circle']).shape)\n")
    assert out.strip() == "False (1, 64)"


SCHEMA = (
    "import json, sys\n"
    "if sys.argv[1] == 'out':\n"
    "    from clipseek.torch_free import keep_torch_out; keep_torch_out()\n"
    "import numpy as np\n"
    "from clipseek.docs import Query, VideoDoc\n"
    "from clipseek.docs import Frame\n"
    "from docarray import DocList\n"
    "schemas = {c.__name__: c.schema() for c in (Query, VideoDoc)}\n"
    "q = Query(id='q1', text='a dog', embedding=np.arange(4, dtype=np.float32))\n"
    "v = VideoDoc(id='v1', frames=DocList[Frame]([Frame(id='f1', time_s=1.0, pixels=np.zeros((2, 2, 3), np.uint8))]))\n"
    "print(json.dumps({'schemas': schemas, 'query': q.to_protobuf().SerializeToString().hex(),\n"
    "                  'video': v.to_protobuf().SerializeToString().hex(), 'torch': 'torch' in sys.modules\n"
    "                  and sys.modules['torch'] is not None}, sort_keys=True, default=str))\n")


def without_random_ids(schema: object) -> object:
    """docarray puts a freshly drawn id into each schema's example: not part of the contract."""
    return json.loads(re.sub(r'"example": "[0-9a-f]{32}"', '"example": "-"', json.dumps(schema, sort_keys=True)))


def test_documents_have_the_same_schema_and_bytes_with_torch_kept_out():
    with_torch = json.loads(subprocess.run([sys.executable, "-c", SCHEMA, "in"], cwd=REPO, capture_output=True,
                                           text=True, check=True, timeout=300).stdout)
    without = json.loads(subprocess.run([sys.executable, "-c", SCHEMA, "out"], cwd=REPO, capture_output=True,
                                        text=True, check=True, timeout=300).stdout)
    assert with_torch["torch"] and not without["torch"]
    assert without_random_ids(with_torch["schemas"]) == without_random_ids(without["schemas"])
    assert with_torch["query"] == without["query"] and with_torch["video"] == without["video"]


def test_the_clipseek_command_runs_with_torch_kept_out():
    out = run_python(
        "import sys\n"
        "from clipseek.api.entry import main as clipseek_cli\n"
        "sys.argv = ['clipseek', '--address', 'http://127.0.0.1:9', 'videos']\n"
        "code = clipseek_cli()\n"
        "print(code, sys.modules.get('torch'))\n")
    assert out.strip().splitlines()[-1] == "1 None"  # no Flow there: it fails, torch-free


def test_console_scripts_run_with_torch_kept_out():
    done = subprocess.run([sys.executable, "-m", "clipseek.torch_free", "jina", "-v"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and re.search(r"\d+\.\d+\.\d+", done.stdout), done.stderr[-2000:]
    done = subprocess.run([sys.executable, "-m", "clipseek.torch_free", "no-such-command"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and "no console script named 'no-such-command'" in done.stderr


def services_of(flow) -> dict[str, list[int]]:
    """service name -> pids of a running BackgroundFlow: the orchestrator (clipseek serve), the gateway, and
    each executor by the ``--name`` of its command line."""
    from procs import alive, descendants

    found: dict[str, list[int]] = {"orchestrator": [flow.process.pid]}
    for pid in alive(descendants(flow.process.pid)):
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        if b"clipseek.engine.gateway" in argv:
            found.setdefault("gateway", []).append(pid)
        elif b"--name" in argv:
            found.setdefault(argv[argv.index(b"--name") + 1].decode(), []).append(pid)
    return found


def torch_mapped(pid: int) -> bool:
    return "libtorch" in Path(f"/proc/{pid}/maps").read_text()


@pytest.mark.slow
def test_in_the_real_flow_only_the_image_encoder_loads_torch(media_dir, tmp_path):
    from clipseek.api.client import ClipseekClient

    with running_flow(TINY_MODEL, "none", str(media_dir), tmp_path / "ws",
                      onnx_cache_dir=str(tmp_path / "onnx")) as flow:
        services = services_of(flow)
        assert set(services) >= {"orchestrator", "gateway", "video_loader", "image_encoder", "text_encoder",
                                 "indexer"}, services
        client = ClipseekClient(flow.http)
        for text in ("a red circle", "a blue square", "a red circle"):  # the text encoder serves queries
            client.search(text)
        loaded = {name: any(torch_mapped(pid) for pid in pids) for name, pids in services.items()}
    assert loaded == {**{name: False for name in services}, "image_encoder": True}
