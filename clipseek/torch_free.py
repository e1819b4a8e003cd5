"""Keeping torch out of the processes that never run a model (gateway, loader, indexer).

Nothing in those services uses torch, but docarray imports it at start whenever it is installed
(``docarray/utils/_internal/misc.py`` tries ``import torch`` to offer torch tensor types), and jina
imports docarray: with the CUDA build of torch that alone is ~700 MiB of resident memory in every
process. clipseek's documents use numpy arrays only (``NdArray``), so a process that hides torch
before the first docarray import serves the same schemas (tests/test_torch_free.py compares them).

``keep_torch_out()`` marks torch as absent the way Python itself does (``sys.modules['torch'] =
None``: ``import torch`` raises ModuleNotFoundError, ``importlib.util.find_spec`` answers None), so
optional imports fall back as if torch were not installed. The Flow's main process calls it before
importing jina; its children are forked from it and inherit the mark. ``let_torch_in()`` removes
the mark: clipseek.model.clip calls it before loading a model, so the encoders import torch in
their own process. The ``clipseek`` command enters through ``clipseek.api.entry`` for the same reason
(``clipseek serve`` is the Flow's main process). ``python -m clipseek.torch_free COMMAND ...``
runs a console script (``jina executor ...``) with torch kept out, and ``python -m clipseek.torch_free -m
MODULE ...`` a module (``clipseek serve`` starts every executor and the gateway this way; the encoders
let torch back in when they load their model).
"""

from __future__ import annotations

import logging
import sys

logger = logging.getLogger("clipseek.torch_free")

HIDDEN = ("torch", "torchvision")


def keep_torch_out() -> bool:
    """Make torch look uninstalled to this process (and to processes forked from it) from now on.

    Returns False, and changes nothing, when torch is already imported: hiding it then would only
    break the modules that hold it.
    """
    if any(sys.modules.get(name) is not None for name in HIDDEN):
        logger.debug("torch is already imported in this process: not hiding it")
        return False
    for name in HIDDEN:
        sys.modules[name] = None  # type: ignore[assignment]  # Python's own "not importable" marker
    return True


def let_torch_in() -> None:
    """Undo ``keep_torch_out`` (before loading a model)."""
    for name in HIDDEN:
        if name in sys.modules and sys.modules[name] is None:
            del sys.modules[name]


def keep_compilers_out() -> bool:
    """In a process that runs a model but never compiles one (the encoders): keep triton out.

    torch imports triton, if installed, as soon as anything touches ``torch._dynamo`` (open_clip
    does, through torchvision): ~100 MiB resident, for kernels clipseek never compiles. torch
    treats triton as optional and does without it. False when triton is already imported.
    """
    if sys.modules.get("triton") is not None:
        return False
    sys.modules["triton"] = None  # type: ignore[assignment]
    return True


def torch_kept_out() -> bool:
    return "torch" in sys.modules and sys.modules["torch"] is None


def run_console_script(argv: list[str]) -> int:
    """Run the console script ``argv[0]`` (an installed entry point, e.g. ``jina``) with torch kept out."""
    from importlib.metadata import entry_points

    if not argv:
        raise ValueError("usage: python -m clipseek.torch_free COMMAND [ARGS...], e.g. jina executor --uses ...")
    found = [e for e in entry_points(group="console_scripts") if e.name == argv[0]]
    if not found:
        raise ValueError(f"no console script named {argv[0]!r} is installed")
    keep_torch_out()
    main = found[0].load()
    sys.argv = list(argv)
    result = main()
    return result if isinstance(result, int) else 0


def run_module(argv: list[str]) -> None:
    """``python -m clipseek.torch_free -m MODULE ARGS...``: run ``MODULE`` as ``__main__`` with torch kept out
    (how ``clipseek serve`` and the containers start executors and the gateway)."""
    import runpy

    keep_torch_out()
    sys.argv = list(argv)
    runpy.run_module(argv[0], run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["-m"]:
        run_module(sys.argv[2:])
    else:
        sys.exit(run_console_script(sys.argv[1:]))
