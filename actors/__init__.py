"""Actors: the runtime, and the domain, legacy, cache, broker and daemon actors with their processes."""
