"""Which model: the ``model``/``pretrained`` settings as a ModelSpec, and what can be known of a model
without loading it (its input size, its identity). No torch here: the loader imports this to size its
frames, and the indexer to check the workspace's model at start-up.

``model`` names an open_clip architecture (``ViT-B-32``, ...), a preset (``PRESETS``: ``demo``, the small
model the project trains and ships in ``clipseek/demo/model``; ``multilingual``), or the path of an
open_clip JSON config. ``pretrained`` is an open_clip pretrained tag (downloaded on first use and
cached), a local checkpoint file, a local directory (the checkpoint plus the Hugging Face
config/tokenizer files of a model whose text tower comes from Hugging Face: docs/models.md), or ``none``
for random weights (tests and benchmarks of speed only).
"""

from __future__ import annotations

import functools
import hashlib
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
# The checkpoint file of a local model directory, first found first (open_clip's own preference, plus
# what its pretrained tags download: open_clip/factory.py _find_checkpoint_in_dir).
CHECKPOINT_NAMES = ("open_clip_model.safetensors", "open_clip_pytorch_model.safetensors",
                    "open_clip_pytorch_model.bin", "open_clip_pytorch_model.pth")
# What a local directory must hold for a Hugging Face text tower, besides the checkpoint: the text
# model's config (AutoConfig) and its fast tokenizer (AutoTokenizer; tokenizer_config.json and
# special_tokens_map.json are read when present). tests/test_models.py builds such a directory.
HF_TEXT_FILES = ("config.json", "tokenizer.json")
MULTILINGUAL_EXTRA = "pip install 'clipseek[multilingual]'"


@dataclass(frozen=True)
class Preset:
    """A named model: what ``model: <name>`` stands for, and the weights used unless others are given."""

    model: str
    pretrained: str
    config_dir: Path | None = None
    about: str = ""


PRESETS: dict[str, Preset] = {
    "demo": Preset(DEMO_MODEL_NAME, str(DEMO_MODEL_DIR / f"{DEMO_MODEL_NAME}.safetensors"), DEMO_MODEL_DIR,
                   "the project's small model of coloured shapes (English and its own vocabulary only)"),
    "multilingual": Preset("xlm-roberta-base-ViT-B-32", "laion5b_s13b_b90k", None,
                           "ViT-B-32 images, XLM-RoBERTa-base text: queries in ~100 languages (docs/models.md)"),
}
PRESETS[DEMO_MODEL_NAME] = PRESETS["demo"]


@dataclass(frozen=True)
class ModelSpec:
    """What to build: open_clip architecture name, weights (tag, file path or None), config folder, and
    the folder of the Hugging Face text model's config and tokenizer (None: from the Hugging Face hub)."""

    name: str
    pretrained: str | None
    config_dir: Path | None = None
    hf_dir: Path | None = None

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
    config_dir = None
    if model.endswith(".json"):  # an open_clip config file of your own architecture
        config = Path(model).expanduser().resolve()
        if not config.is_file():
            raise ModelLoadError(f"model config not found: {model}")
        model, config_dir = config.stem, config.parent
    elif model in PRESETS:
        preset = PRESETS[model]
        model, config_dir = preset.model, preset.config_dir
        if pretrained is None or pretrained.strip() == DEFAULT_PRETRAINED:  # the setting's default: the preset's
            weights = preset.pretrained
    if weights is not None and Path(weights).expanduser().is_dir():
        folder = Path(weights).expanduser().resolve()
        return ModelSpec(model, str(checkpoint_in(folder)), config_dir, folder)
    return ModelSpec(model, weights, config_dir)


def checkpoint_in(folder: Path) -> Path:
    """The CLIP checkpoint of a local model directory; ModelLoadError naming what was looked for."""
    for name in CHECKPOINT_NAMES:
        if (folder / name).is_file():
            return folder / name
    raise ModelLoadError(f"no open_clip checkpoint in {folder}: expected one of {', '.join(CHECKPOINT_NAMES)} "
                         f"(docs/models.md lists the files of a model directory)")


def _config_path(spec: ModelSpec) -> Path | None:
    if spec.config_dir is not None:
        return spec.config_dir / f"{spec.name}.json"
    found = importlib_util.find_spec("open_clip")
    if found is None or not found.submodule_search_locations:
        return None
    return Path(list(found.submodule_search_locations)[0]) / "model_configs" / f"{spec.name}.json"


def model_config(spec: ModelSpec) -> dict:
    """The open_clip config of the spec's architecture ({} when there is none to read)."""
    path = _config_path(spec)
    return json.loads(path.read_text()) if path is not None and path.is_file() else {}


def hf_text_model(config: dict) -> str:
    """The Hugging Face model the text tower of an open_clip config is built from ("" for open_clip's own)."""
    return str(config.get("text_cfg", {}).get("hf_model_name") or "")


def check_hf_text_files(spec: ModelSpec, config: dict) -> None:
    """For a model whose text tower comes from Hugging Face: transformers must be installed, and a local
    model directory must hold the text model's config and tokenizer. Raises ModelLoadError saying what to do."""
    if not hf_text_model(config):
        return
    if importlib_util.find_spec("transformers") is None:
        raise ModelLoadError(f"{spec.name} builds its text tower with Hugging Face transformers, which is not "
                             f"installed: {MULTILINGUAL_EXTRA}")
    if spec.hf_dir is not None:
        missing = [name for name in HF_TEXT_FILES if not (spec.hf_dir / name).is_file()]
        if missing:
            raise ModelLoadError(f"{spec.hf_dir} lacks {', '.join(missing)} of the text model "
                                 f"{hf_text_model(config)} (docs/models.md lists the files of a model directory)")


@functools.lru_cache(maxsize=16)
def image_size_for(model: str, pretrained: str | None = None) -> int:
    """The square input size (px) of a model, read from its open_clip config without importing torch."""
    config = model_config(resolve_model(model, pretrained))
    return image_size_of_config(config) if config else 224


def image_size_of_config(config: dict) -> int:
    """The square input size (px) an open_clip model config gives."""
    size = config.get("vision_cfg", {}).get("image_size", 224)
    return int(size[0] if isinstance(size, (list, tuple)) else size)


# -- identity: which model made a vector ---------------------------------------------------------------
@functools.lru_cache(maxsize=8)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file (hex), computed once per process for a file that did not change."""
    stat = Path(path).stat()
    return _file_sha256(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


def weights_label(spec: ModelSpec) -> str | None:
    """The weights' name for people: the pretrained tag, the checkpoint's file name, the model
    directory's name; None for random weights."""
    if spec.pretrained is None:
        return None
    if spec.hf_dir is not None:
        return spec.hf_dir.name
    if spec.is_local_file or "/" in spec.pretrained or "\\" in spec.pretrained:
        return Path(spec.pretrained).name
    return spec.pretrained


def weights_identity(spec: ModelSpec, checkpoint: str | None) -> str:
    """How a workspace records the weights: ``random``, or their name and the checkpoint's hash
    (``laion2b_s34b_b79k sha256:<16 hex>``); only the name when the checkpoint is not at hand."""
    label = weights_label(spec)
    if label is None:
        return "random"
    return f"{label} sha256:{file_sha256(checkpoint)[:16]}" if checkpoint else label


def model_identity(name: str, weights: str) -> str:
    """The identity encoders stamp on their vectors: ``<architecture> [<weights>]`` (parsed by
    clipseek.index.backend.ModelIdentity.parse)."""
    return f"{name} [{weights}]"


def expected_identity(model: str, pretrained: str | None) -> tuple[str, int]:
    """The identity and dimension that encoders loading these settings will stamp, as far as it can be
    known without torch or a download: a pretrained tag gives its name only (the encoder adds the
    downloaded file's hash), a local file or directory its hash too. Dimension 0 when unknown."""
    spec = resolve_model(model, pretrained)
    checkpoint = spec.pretrained if spec.is_local_file else None
    return model_identity(spec.name, weights_identity(spec, checkpoint)), int(model_config(spec).get("embed_dim", 0))
