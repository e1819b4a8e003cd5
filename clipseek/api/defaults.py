"""What the client, the CLI and the page share, in a module that imports nothing heavy: the CLI builds
its options from it, and `clipseek serve` (the supervisor of the engine's processes) must not pay for
docarray's import, which loads torch (about 800 MB)."""

from __future__ import annotations

import os

DEFAULT_ADDRESS = "http://127.0.0.1:51001"
# Seconds of video per /index request. Each range is decoded from ~12 s before it (so that the frames chosen
# do not depend on where it starts): longer ranges pay that less often (docs/benchmarks.md, fifth session).
DEFAULT_CHUNK_S = 200.0
# /index requests under way at once: the loader (allow_concurrent in flow.yml) decodes two ranges while the
# encoder embeds a third, so the cores the encoder leaves idle between ranges are used.
DEFAULT_IN_FLIGHT = 3
# Documents per request. jina's own HTTP gateway answers only the first 100 documents of a request
# (clipseek's gateway answers all); at most 100 is safe with either.
MAX_DOCS_PER_REQUEST = 100


def default_address() -> str:
    return os.environ.get("CLIPSEEK_ADDRESS", DEFAULT_ADDRESS)


def default_api_key() -> str:
    return os.environ.get("CLIPSEEK_API_KEY", "")
