"""Token ids for the text tower without torch: the same ids as open_clip's tokenizers, as int64 numpy arrays.

open_clip's ``tokenizer`` module imports torch at its top (to return tensors), so a process that runs the
text tower on ONNX Runtime cannot use it. Two tokenizers cover open_clip's text towers:

- ``BpeTokenizer``: open_clip's ``SimpleTokenizer`` (CLIP's byte-level BPE, OpenAI's code): the same
  cleaning (ftfy, HTML unescape, whitespace, lower case), the same split pattern and merges read from
  open_clip's own vocabulary file (found on disk, open_clip is not imported), ``<start_of_text>`` ...
  ``<end_of_text>``, truncated to the context with the end-of-text token kept, zero-padded.
- ``HfFileTokenizer``: a Hugging Face text tower's ``tokenizer.json`` read with the ``tokenizers`` library,
  as open_clip's ``HFTokenizer`` calls it through transformers (whitespace cleaning, padding to the context,
  truncation keeping the special tokens).

tests/test_onnx_text.py checks both against open_clip's over a varied corpus. Anything else (SigLIP's
sentencepiece tokenizers, open_clip's random/simple reduction masks, the ``clips`` mode, a Hugging Face
tokenizer that only the hub has) raises UnsupportedTokenizer: the text encoder then stays on torch.
"""

from __future__ import annotations

import functools
import gzip
import html
import json
from importlib import util as importlib_util
from pathlib import Path
from typing import Protocol

import numpy as np

from clipseek.model.spec import ModelSpec, hf_text_model

DEFAULT_CONTEXT_LENGTH = 77  # open_clip's, for a config that names none
BPE_VOCAB = "bpe_simple_vocab_16e6.txt.gz"  # in open_clip's package folder
BPE_MERGES = 49152 - 256 - 2  # how many merges CLIP's vocabulary uses (open_clip reads the same slice)


class UnsupportedTokenizer(ValueError):
    """This model's tokenizer has no torch-free equivalent here."""


class Tokenizer(Protocol):
    context_length: int
    pad_id: int

    def __call__(self, texts: list[str]) -> np.ndarray: ...


@functools.lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """CLIP's reversible map of the 256 byte values to printable characters (open_clip's, verbatim logic)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(2 ** 8):
        if b not in bs:
            bs.append(b)
            cs.append(2 ** 8 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs], strict=True))


def basic_clean(text: str) -> str:
    import ftfy

    return html.unescape(html.unescape(ftfy.fix_text(text))).strip()


def whitespace_clean(text: str) -> str:
    return " ".join(text.split()).strip()


def canonicalize(text: str) -> str:
    import string

    text = basic_clean(text).replace("_", " ").translate(str.maketrans("", "", string.punctuation)).lower()
    return " ".join(text.split()).strip()


CLEANERS = {
    "lower": lambda text: whitespace_clean(basic_clean(text)).lower(),
    "whitespace": lambda text: whitespace_clean(basic_clean(text)),
    "canonicalize": canonicalize,
}


def cleaner(name: str):
    if name not in CLEANERS:
        raise UnsupportedTokenizer(f"tokenizer clean mode {name!r} (known: {', '.join(CLEANERS)})")
    return CLEANERS[name]


def open_clip_file(name: str) -> Path:
    """A data file of the installed open_clip package (found without importing it: that imports torch)."""
    found = importlib_util.find_spec("open_clip")
    if found is None or not found.submodule_search_locations:
        raise UnsupportedTokenizer("open_clip is not installed: its BPE vocabulary is not at hand")
    path = Path(list(found.submodule_search_locations)[0]) / name
    if not path.is_file():
        raise UnsupportedTokenizer(f"open_clip's {name} is missing from {path.parent}")
    return path


@functools.lru_cache(maxsize=2)
def _bpe_tables(path: str, specials: tuple[str, ...]) -> tuple[dict[str, int], dict[tuple[str, str], int]]:
    merges_text = gzip.open(path).read().decode("utf-8").split("\n")[1:BPE_MERGES + 1]
    merges = [tuple(line.split()) for line in merges_text]
    vocab = list(bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab] + ["".join(m) for m in merges] + list(specials)
    return {token: i for i, token in enumerate(vocab)}, {m: i for i, m in enumerate(merges)}


class BpeTokenizer:
    """open_clip's SimpleTokenizer (its default ``__call__``: truncation, no reduction mask), returning numpy."""

    pad_id = 0

    def __init__(self, context_length: int = DEFAULT_CONTEXT_LENGTH, clean: str = "lower",
                 additional_special_tokens: list[str] | None = None, bpe_path: str | None = None):
        import regex

        specials = ("<start_of_text>", "<end_of_text>", *(additional_special_tokens or []))
        self.encoder, self.bpe_ranks = _bpe_tables(bpe_path or str(open_clip_file(BPE_VOCAB)), specials)
        self.byte_encoder = bytes_to_unicode()
        self.cache: dict[str, str] = {t: t for t in specials}
        words = r"""|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
        self.pattern = regex.compile("|".join(specials) + words, regex.IGNORECASE)
        self.sot_id, self.eot_id = self.encoder[specials[0]], self.encoder[specials[1]]
        self.context_length = int(context_length)
        self.clean = cleaner(clean)

    def bpe(self, token: str) -> str:
        """The BPE pieces of one pre-token, space-separated (open_clip's ``bpe``, memoised)."""
        if token in self.cache:
            return self.cache[token]
        word = tuple(token[:-1]) + (token[-1] + "</w>",)
        pairs = set(zip(word, word[1:], strict=False))
        if not pairs:
            return token + "</w>"
        while True:
            first, second = min(pairs, key=lambda pair: self.bpe_ranks.get(pair, float("inf")))
            if (first, second) not in self.bpe_ranks:
                break
            merged: list[str] = []
            i = 0
            while i < len(word):
                try:
                    j = word.index(first, i)
                except ValueError:
                    merged.extend(word[i:])
                    break
                merged.extend(word[i:j])
                i = j
                if word[i] == first and i < len(word) - 1 and word[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = tuple(merged)
            if len(word) == 1:
                break
            pairs = set(zip(word, word[1:], strict=False))
        pieces = " ".join(word)
        self.cache[token] = pieces
        return pieces

    def encode(self, text: str) -> list[int]:
        ids: list[int] = []
        for token in self.pattern.findall(self.clean(text)):
            token = "".join(self.byte_encoder[b] for b in token.encode("utf-8"))
            ids.extend(self.encoder[piece] for piece in self.bpe(token).split(" "))
        return ids

    def __call__(self, texts: list[str]) -> np.ndarray:
        result = np.zeros((len(texts), self.context_length), dtype=np.int64)
        for row, text in enumerate(texts):
            ids = [self.sot_id, *self.encode(text), self.eot_id]
            if len(ids) > self.context_length:
                ids = ids[: self.context_length]
                ids[-1] = self.eot_id
            result[row, : len(ids)] = ids
        return result


class HfFileTokenizer:
    """A Hugging Face ``tokenizer.json`` as open_clip's HFTokenizer uses it (standard mode)."""

    def __init__(self, tokenizer_file: Path, context_length: int, clean: str = "whitespace",
                 strip_sep_token: bool = False):
        from tokenizers import Tokenizer as HfTokenizer

        self.tokenizer = HfTokenizer.from_file(str(tokenizer_file))
        self.context_length = int(context_length)
        self.clean = cleaner(clean)
        self.pad_id = self._special_id(tokenizer_file, "pad_token", "<pad>")
        self.sep_id = self._special_id(tokenizer_file, "sep_token", "</s>") if strip_sep_token else None
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=self.context_length)

    def _special_id(self, tokenizer_file: Path, role: str, default: str) -> int:
        """The id of a special token: named in tokenizer_config.json / special_tokens_map.json when present."""
        name = default
        for extra in ("special_tokens_map.json", "tokenizer_config.json"):
            path = tokenizer_file.parent / extra
            if path.is_file():
                value = json.loads(path.read_text()).get(role)
                name = value.get("content", name) if isinstance(value, dict) else (value or name)
        token_id = self.tokenizer.token_to_id(name)
        if token_id is None:
            raise UnsupportedTokenizer(f"{tokenizer_file}: no {role} {name!r} in the vocabulary")
        return int(token_id)

    def __call__(self, texts: list[str]) -> np.ndarray:
        result = np.full((len(texts), self.context_length), self.pad_id, dtype=np.int64)
        for row, encoding in enumerate(self.tokenizer.encode_batch([self.clean(t) for t in texts])):
            result[row, : len(encoding.ids)] = encoding.ids
        if self.sep_id is not None:
            result[result == self.sep_id] = 0
        return result


def text_tokenizer(spec: ModelSpec, config: dict) -> Tokenizer:
    """The torch-free tokenizer of this model's text tower (its open_clip config); UnsupportedTokenizer
    when there is none here (module doc)."""
    text_cfg = config.get("text_cfg", {})
    context_length = int(text_cfg.get("context_length", DEFAULT_CONTEXT_LENGTH))
    kwargs = dict(text_cfg.get("tokenizer_kwargs", {}))
    if text_cfg.get("hf_tokenizer_name") or hf_text_model(config):
        if spec.hf_dir is None:
            raise UnsupportedTokenizer(f"{spec.name}: its Hugging Face tokenizer is read from the hub, not a "
                                       f"model directory")
        if text_cfg.get("tokenizer_mode"):
            raise UnsupportedTokenizer(f"{spec.name}: tokenizer mode {text_cfg['tokenizer_mode']!r}")
        unknown = sorted(set(kwargs) - {"clean", "strip_sep_token"})
        if unknown:
            raise UnsupportedTokenizer(f"{spec.name}: tokenizer options {', '.join(unknown)}")
        return HfFileTokenizer(spec.hf_dir / "tokenizer.json", context_length, **kwargs)
    if "siglip" in spec.name.lower():
        raise UnsupportedTokenizer(f"{spec.name}: SigLIP's sentencepiece tokenizer")
    if kwargs.get("reduction_mask"):
        raise UnsupportedTokenizer(f"{spec.name}: tokenizer reduction mask {kwargs['reduction_mask']!r}")
    unknown = sorted(set(kwargs) - {"clean", "additional_special_tokens", "reduction_mask"})
    if unknown:
        raise UnsupportedTokenizer(f"{spec.name}: tokenizer options {', '.join(unknown)}")
    return BpeTokenizer(context_length, kwargs.get("clean", "lower"), kwargs.get("additional_special_tokens"))
