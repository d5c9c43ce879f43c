"""Every metric name a Fabric process exports, and the names a PromQL expression uses.

The names come from the processes' own metric definitions (their registries), not
from a list kept by hand, so renaming a metric fails the tests of every alert rule and
dashboard panel that still uses the old name.
"""

from __future__ import annotations

import re

from prometheus_client import CollectorRegistry

from actors.api.metrics import ApiMetrics
from actors.broker.metrics import BrokerMetrics
from actors.daemon import metrics as daemon_metrics

# What prometheus_client appends to a family's name in its samples, by type.
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("_count", "_sum", "_created"),
    "gauge": ("",),
    "info": ("_info",),
}
# Our metrics all start so; anything else in an expression is PromQL (functions, labels).
_OURS = re.compile(r"\bfabric_[a-z0-9_]+\b")
# Label names and values are not metric names: drop `{...}` before looking.
_MATCHERS = re.compile(r"\{[^}]*\}")


def sample_names(registry: CollectorRegistry) -> set[str]:
    names: set[str] = set()
    for family in registry.collect():
        names.update(family.name + suffix for suffix in _SUFFIXES[family.type])
    return names


def exported_names() -> set[str]:
    """Every sample name the api, the broker and a daemon can expose."""
    return (
        sample_names(ApiMetrics().registry)
        | sample_names(BrokerMetrics().registry)
        | sample_names(daemon_metrics.REGISTRY)
    )


def used_names(expr: str) -> set[str]:
    """The Fabric metric names a PromQL expression reads."""
    return set(_OURS.findall(_MATCHERS.sub("", expr)))
