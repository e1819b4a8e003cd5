"""The demo: a synthetic vocabulary of coloured shapes, a tiny CLIP trained on it, and videos made of it.

Model weights cannot be downloaded where clipseek is built, so the project ships its own small open_clip
model (``model/clipseek-demo.json`` + ``model/clipseek-demo.safetensors``), trained by
``tools/train_demo_model.py`` on frames drawn by :mod:`clipseek.demo.vocab`. The same renderer draws the
demo videos (``tools/make_demo_videos.py``), so a query such as "a red circle" (or "一个红色的圆形": the
model knows the vocabulary in English and Chinese) finds its shots.

Load the model with open_clip::

    open_clip.add_model_config(MODEL_DIR)
    model = open_clip.create_model(MODEL_NAME, pretrained=str(MODEL_WEIGHTS_PATH))
    tokenizer = open_clip.get_tokenizer(MODEL_NAME)

Frames go in letterboxed to ``vision_cfg.image_size`` (:func:`clipseek.media.imaging.letterbox`), scaled to
[0, 1] and normalised with open_clip's OpenAI mean/std (``model.visual.preprocess_cfg``).

The image tower is open_clip's ModifiedResNet (``vision_cfg.layers`` is a list), which learned the shapes
several times faster than a ViT of the same cost; it has BatchNorm, so embed only after ``model.eval()``.
"""

from pathlib import Path

MODEL_NAME = "clipseek-demo"
MODEL_DIR = Path(__file__).resolve().parent / "model"
MODEL_CONFIG_PATH = MODEL_DIR / f"{MODEL_NAME}.json"
MODEL_WEIGHTS_PATH = MODEL_DIR / f"{MODEL_NAME}.safetensors"

# Seeds: training draws scenes from TRAIN_SEED; evaluation and tests draw fresh ones from other seeds.
TRAIN_SEED = 1234
EVAL_SEED = 987_654
