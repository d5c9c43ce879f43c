"""Benchmarks (not tests): run with `./bin/fabric bench [name]` or `python -m bench [name]`."""
