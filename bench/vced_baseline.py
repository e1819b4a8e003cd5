"""The baseline: what VCED (jina-ai's Video Content Extraction Demo) did, on the same video and model.

Decode every frame at 1 fps at full resolution into one numpy array (ffmpeg-python, rawvideo to a
pipe), preprocess each frame with open_clip's own transform (PIL resize + centre crop + normalise),
embed one frame per model call, and search with a Python loop over every frame's vector.

``python bench/vced_baseline.py VIDEO MODEL PRETRAINED`` prints one JSON line.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

QUERIES = ["a red square", "people walking on a beach", "a test pattern with colour bars", "a dog",
           "green light", "a spinning wheel", "sunset over the sea", "black and white grid"]


def decode_1fps_full_resolution(path: Path):
    """Every frame at 1 fps, full size, as one uint8 N x H x W x 3 array (VCED's VideoLoader)."""
    import ffmpeg
    import numpy as np

    probe = ffmpeg.probe(str(path))
    stream = next(s for s in probe["streams"] if s["codec_type"] == "video")
    width, height = int(stream["width"]), int(stream["height"])
    out, _ = (ffmpeg.input(str(path)).filter("fps", fps=1).output("pipe:", format="rawvideo", pix_fmt="rgb24")
              .run(capture_stdout=True, capture_stderr=True))
    return np.frombuffer(out, np.uint8).reshape(-1, height, width, 3)


def load_model(model: str, pretrained: str):
    import open_clip

    from clipseek.model.spec import resolve_model

    spec = resolve_model(model, pretrained)
    if spec.config_dir is not None:
        open_clip.add_model_config(spec.config_dir)
    clip, _, preprocess = open_clip.create_model_and_transforms(spec.name, pretrained=spec.pretrained)
    clip.eval()
    return clip, preprocess, open_clip.get_tokenizer(spec.name)


def run(video: str, model: str, pretrained: str) -> dict:
    """One baseline run (call it through bench.worker so the peak RSS is its own)."""
    import numpy as np
    import torch
    from PIL import Image

    from bench.measure import self_peak_rss_mb

    clip, preprocess, tokenizer = load_model(model, pretrained)
    started = time.perf_counter()
    frames = decode_1fps_full_resolution(Path(video))
    decoded = time.perf_counter()
    vectors = []
    with torch.inference_mode():
        for frame in frames:  # one frame per model call, as VCED's encoder did
            image = preprocess(Image.fromarray(frame)).unsqueeze(0)
            vectors.append(clip.encode_image(image)[0].numpy())
    finished = time.perf_counter()
    latencies_ms = []
    with torch.inference_mode():
        for text in QUERIES * 4:
            t0 = time.perf_counter()
            query = clip.encode_text(tokenizer([text]))[0].numpy()
            scores = []
            for i, vector in enumerate(vectors):  # brute force, one frame at a time
                scores.append((float(np.dot(query, vector) / (np.linalg.norm(query) * np.linalg.norm(vector))), i))
            scores.sort(reverse=True)
            _ = scores[:10]
            latencies_ms.append((time.perf_counter() - t0) * 1000)
    return {"wall_s": finished - started, "decode_s": decoded - started, "encode_s": finished - decoded,
            "frames": len(vectors), "search_p50_ms": float(np.median(latencies_ms)),
            "peak_rss_mb": self_peak_rss_mb()}


def main() -> None:
    video, model, pretrained = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    print(json.dumps(run(str(video), model, pretrained)), flush=True)


if __name__ == "__main__":
    main()
