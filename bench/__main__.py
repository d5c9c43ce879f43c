"""Dispatch `python -m bench [NAME] [ARGS...]` to a benchmark module; no name runs them all."""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = {
    "publish": "bench.publish",
    "deliver": "bench.deliver",
    "growth": "bench.growth",
}


def main(argv: list[str]) -> int:
    if argv and argv[0] in ("-h", "--help"):
        print("usage: python -m bench [NAME [ARGS...]]\nbenchmarks: " + ", ".join(BENCHMARKS))
        return 0
    names = [argv[0]] if argv else list(BENCHMARKS)
    args = argv[1:]
    for name in names:
        if name not in BENCHMARKS:
            print(f"bench: unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}", file=sys.stderr)
            return 2
        module = importlib.import_module(BENCHMARKS[name])
        code = int(module.main(args))
        if code:
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
