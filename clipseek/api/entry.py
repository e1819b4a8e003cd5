"""The ``clipseek`` command's entry point (pyproject's console script, and ``python -m clipseek``).

The CLI never runs a model, and ``clipseek serve`` forks the Flow's processes from it, so torch is
kept out (clipseek.torch_free) before anything imports docarray.
"""

from __future__ import annotations

from clipseek.torch_free import keep_torch_out


def main() -> int:
    keep_torch_out()
    from clipseek.api.cli import main as cli_main

    return cli_main()
