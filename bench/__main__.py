"""`python -m bench [NAME] [ARGS...]` (what `fabric bench` runs).

`deliver` and `growth` are tools with flags of their own; every other name,
and no name at all, goes to the figures runner (bench/runner.py), which
measures each figure against its baseline and runs growth's figures too.
"""

from __future__ import annotations

import importlib
import sys

TOOLS = {
    "cache": "bench.cache_reads",
    "deliver": "bench.deliver",
    "growth": "bench.growth",
}


def main(argv: list[str]) -> int:
    module = TOOLS.get(argv[0]) if argv else None
    if module is not None:
        return int(importlib.import_module(module).main(argv[1:]))
    from bench import runner  # imported here: the tools above do not need its imports

    return runner.main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
