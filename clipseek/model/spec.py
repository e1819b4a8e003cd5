"""Which model: the ``model``/``pretrained`` settings as a ModelSpec, and what can be known of a model
without loading it (its input size). No torch here: the loader imports this to size its frames.

``model`` names an open_clip architecture (``ViT-B-32``, ...), ``demo`` (the small model the project
trains and ships in ``clipseek/demo/model``), or the path of an open_clip JSON config; ``pretrained`` is
an open_clip pretrained tag (downloaded on first use and cached), a local checkpoint file, or ``none``
for random weights (tests and benchmarks of speed only).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from importlib import util as importlib_util
from pathlib import Path

from clipseek.errors import ModelLoadError

DEMO_MODEL_DIR = Path(__file__).resolve().parents[1] / "demo" / "model"
DEMO_MODEL_NAME = "clipseek-demo"
DEFAULT_MODEL = "ViT-B-32"
DEFAULT_PRETRAINED = "laion2b_s34b_b79k"
RANDOM_WEIGHTS = {"none", "random", ""}
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class ModelSpec:
    """What to build: open_clip architecture name, weights (tag, file path or None), config file."""

    name: str
    pretrained: str | None
    config_dir: Path | None = None

    @property
    def is_local_file(self) -> bool:
        return self.pretrained is not None and Path(self.pretrained).expanduser().is_file()

    @property
    def is_demo(self) -> bool:
        return self.name == DEMO_MODEL_NAME


def resolve_model(model: str, pretrained: str | None) -> ModelSpec:
    """Turn the ``model``/``pretrained`` settings into a ModelSpec (no torch needed)."""
    model = (model or DEFAULT_MODEL).strip()
    weights = None if pretrained is None or pretrained.strip().lower() in RANDOM_WEIGHTS else pretrained.strip()
    if model.endswith(".json"):  # an open_clip config file of your own architecture
        config = Path(model).expanduser().resolve()
        if not config.is_file():
            raise ModelLoadError(f"model config not found: {model}")
        return ModelSpec(config.stem, weights, config.parent)
    if model in {"demo", DEMO_MODEL_NAME}:
        default_file = DEMO_MODEL_DIR / f"{DEMO_MODEL_NAME}.safetensors"
        if pretrained is None or pretrained.strip() == DEFAULT_PRETRAINED:
            weights = str(default_file)
        return ModelSpec(DEMO_MODEL_NAME, weights, DEMO_MODEL_DIR)
    return ModelSpec(model, weights)


def _config_path(spec: ModelSpec) -> Path | None:
    if spec.config_dir is not None:
        return spec.config_dir / f"{spec.name}.json"
    found = importlib_util.find_spec("open_clip")
    if found is None or not found.submodule_search_locations:
        return None
    return Path(list(found.submodule_search_locations)[0]) / "model_configs" / f"{spec.name}.json"


@functools.lru_cache(maxsize=16)
def image_size_for(model: str, pretrained: str | None = None) -> int:
    """The square input size (px) of a model, read from its open_clip config without importing torch."""
    spec = resolve_model(model, pretrained)
    path = _config_path(spec)
    if path is None or not path.is_file():
        return 224
    return image_size_of_config(json.loads(path.read_text()))


def image_size_of_config(config: dict) -> int:
    """The square input size (px) an open_clip model config gives."""
    size = config.get("vision_cfg", {}).get("image_size", 224)
    return int(size[0] if isinstance(size, (list, tuple)) else size)
