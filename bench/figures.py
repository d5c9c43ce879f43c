"""What a benchmark reports: figures measured against a baseline from the same run.

A `Figure` is one number we care about (e.g. account.get throughput at 16
clients) and its baseline (a bare aiohttp handler serving the same JSON),
both measured `runs` times, alternately, in one bench run. Each side is the
median of its runs with min and max; the ratio is measured / baseline of the
medians, and each run's own ratio is kept too (a goal checked "on every
run" looks at the worst of them). A `Goal` bounds the ratio: at least
`ratio` when higher is better, at most `ratio` when lower is better, and
optionally an absolute `cap` on the measured value.

A figure measured through a running system names its bus (`zmq`: our
broker, `jetstream`: NATS); `side_by_side` puts one figure's buses next to
each other, each beside its own baseline, with how each bus compares to the
first. `table` renders figures for people; `document` is the JSON written
with `--json` (figures, the side-by-side comparisons, the machine, the
command, the mode).
"""

from __future__ import annotations

import os
import platform
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Better = Literal["higher", "lower"]


class BenchError(RuntimeError):
    """The benchmark could not measure what it claims (a call failed, a process died)."""


@dataclass(frozen=True, slots=True)
class Stat:
    median: float
    min: float
    max: float
    runs: tuple[float, ...]

    @classmethod
    def of(cls, values: Sequence[float]) -> Stat:
        if not values:
            raise BenchError("a figure was measured zero times")
        return cls(statistics.median(values), min(values), max(values), tuple(values))

    def to_json(self) -> dict[str, Any]:
        return {"median": _round(self.median), "min": _round(self.min), "max": _round(self.max),
                "runs": [_round(v) for v in self.runs]}


@dataclass(frozen=True, slots=True)
class Goal:
    ratio: float
    every_run: bool = False  # the worst run's ratio must meet it, not only the medians'
    cap: float | None = None  # an absolute bound on the measured value (same direction)

    def text(self, better: Better, unit: str) -> str:
        sign = ">=" if better == "higher" else "<="
        words = f"ratio {sign} {self.ratio:g}" + (" every run" if self.every_run else "")
        return words + (f", {sign} {self.cap:g} {unit}" if self.cap is not None else "")


@dataclass(frozen=True, slots=True)
class Figure:
    group: str  # the benchmark that measured it: create, get, latency, ...
    name: str
    unit: str
    better: Better
    measured: Stat
    baseline: Stat
    baseline_name: str
    goal: Goal | None
    run_ratios: tuple[float, ...]
    notes: tuple[str, ...] = field(default=())
    bus: str | None = None  # the bus of the system measured; None: no system (publish, growth)

    @property
    def ratio(self) -> float:
        return self.measured.median / self.baseline.median

    @property
    def worst_ratio(self) -> float:
        return min(self.run_ratios) if self.better == "higher" else max(self.run_ratios)

    def met(self) -> bool | None:
        if self.goal is None:
            return None
        ratio = self.worst_ratio if self.goal.every_run else self.ratio
        ok = ratio >= self.goal.ratio if self.better == "higher" else ratio <= self.goal.ratio
        if self.goal.cap is not None:
            value = self.measured.max
            ok = ok and (value >= self.goal.cap if self.better == "higher" else value <= self.goal.cap)
        return ok

    def to_json(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "name": self.name,
            "bus": self.bus,
            "unit": self.unit,
            "better": self.better,
            "measured": self.measured.to_json(),
            "baseline": {"name": self.baseline_name, **self.baseline.to_json()},
            "ratio": _round(self.ratio),
            "run_ratios": [_round(r) for r in self.run_ratios],
            "goal": None if self.goal is None else {
                "ratio": self.goal.ratio, "every_run": self.goal.every_run, "cap": self.goal.cap,
                "text": self.goal.text(self.better, self.unit),
            },
            "met": self.met(),
            "notes": list(self.notes),
        }


def figure(
    group: str,
    name: str,
    unit: str,
    better: Better,
    pairs: Sequence[tuple[float, float]],
    baseline_name: str,
    goal: Goal | None = None,
    notes: Sequence[str] = (),
    bus: str | None = None,
) -> Figure:
    """A figure from (measured, baseline) pairs, one per run; both sides must be positive."""
    for measured, baseline in pairs:
        if not (measured > 0 and baseline > 0):
            raise BenchError(f"{group}: {name}: measured {measured!r} against {baseline!r}")
    return Figure(
        group, name, unit, better,
        Stat.of([m for m, _ in pairs]), Stat.of([b for _, b in pairs]), baseline_name, goal,
        tuple(m / b for m, b in pairs), tuple(notes), bus,
    )


@dataclass(frozen=True, slots=True)
class Comparison:
    """One figure on several buses (in the order run); each against the first one."""

    group: str
    name: str
    unit: str
    better: Better
    figures: tuple[Figure, ...]

    def versus_first(self, f: Figure) -> tuple[float, float]:
        """(this bus's median / the first's, this bus's ratio / the first's ratio): the second
        discounts what the two baselines differ by."""
        first = self.figures[0]
        return f.measured.median / first.measured.median, f.ratio / first.ratio

    def to_json(self) -> dict[str, Any]:
        first = self.figures[0]
        return {
            "group": self.group,
            "name": self.name,
            "unit": self.unit,
            "better": self.better,
            "buses": {
                f.bus: {"measured": _round(f.measured.median), "baseline": _round(f.baseline.median),
                        "ratio": _round(f.ratio), "met": f.met()}
                for f in self.figures
            },
            "versus": {
                f.bus: {"of": first.bus, "measured": _round(m), "ratio": _round(r)}
                for f in self.figures[1:]
                for m, r in [self.versus_first(f)]
            },
        }


def side_by_side(figures: Sequence[Figure]) -> list[Comparison]:
    """Every figure measured on more than one bus, its buses together, in the order first seen."""
    by_name: dict[tuple[str, str], list[Figure]] = {}
    for f in figures:
        if f.bus is not None:
            by_name.setdefault((f.group, f.name), []).append(f)
    return [
        Comparison(group, name, same[0].unit, same[0].better, tuple(same))
        for (group, name), same in by_name.items()
        if len({f.bus for f in same}) > 1
    ]


def _round(value: float) -> float:
    return float(f"{value:.4g}") if abs(value) < 1e4 else round(value, 1)


def _num(value: float) -> str:
    if value >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}" if value < 10 else f"{value:.1f}"


def _stat(stat: Stat) -> str:
    if len(stat.runs) == 1:
        return _num(stat.median)
    return f"{_num(stat.median)} [{_num(stat.min)}..{_num(stat.max)}]"


def table(figures: Sequence[Figure], *, details: bool = True) -> str:
    """One block per group: measured and baseline as `median [min..max]`, ratio, goal, verdict;
    with `details`, what the baseline is and the notes."""
    lines: list[str] = []
    group = None
    for f in figures:
        if f.group != group:
            group = f.group
            lines.append(f"{group}")
        met = f.met()
        verdict = "" if met is None else ("met" if met else "MISSED")
        goal = "" if f.goal is None else f.goal.text(f.better, f.unit)
        on = "" if f.bus is None else f", {f.bus} bus"
        lines.append(f"  {f.name} ({f.unit}, {f.better} is better{on})")
        lines.append(f"    measured {_stat(f.measured):<28} baseline {_stat(f.baseline):<28} "
                     f"ratio {f.ratio:.2f}  {goal} {verdict}".rstrip())
        if details:
            lines.append(f"    baseline: {f.baseline_name}")
            lines.extend(f"    note: {note}" for note in f.notes)
    return "\n".join(lines)


def comparison_table(comparisons: Sequence[Comparison]) -> str:
    """Each figure's buses on one line each, measured beside its baseline, then each bus
    against the first."""
    lines: list[str] = []
    group = None
    for c in comparisons:
        if c.group != group:
            group = c.group
            lines.append(f"{group}, bus by bus (each beside its baseline, measured alternately with it)")
        lines.append(f"  {c.name} ({c.unit}, {c.better} is better)")
        width = max(len(f.bus or "") for f in c.figures)
        for f in c.figures:
            met = f.met()
            verdict = "" if met is None else ("met" if met else "MISSED")
            lines.append(f"    {f.bus or '':<{width}}  measured {_stat(f.measured):<24} "
                         f"baseline {_stat(f.baseline):<24} ratio {f.ratio:.2f}  {verdict}".rstrip())
        for f in c.figures[1:]:
            measured, ratio = c.versus_first(f)
            lines.append(f"    {f.bus} / {c.figures[0].bus}: {measured:.2f} measured, "
                         f"{ratio:.2f} in ratio to the baseline")
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    model = "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "load_average_at_start": [round(v, 2) for v in os.getloadavg()],
        "python": platform.python_version(),
        "system": platform.platform(),
    }


def document(
    figures: Sequence[Figure], *, mode: str, command: str, host: dict[str, Any], seconds: float
) -> dict[str, Any]:
    return {
        "mode": mode,
        "command": command,
        "machine": host,
        "duration_s": round(seconds, 1),
        "groups": sorted({f.group for f in figures}, key=[f.group for f in figures].index),
        "figures": [f.to_json() for f in figures],
        "side_by_side": [c.to_json() for c in side_by_side(figures)],
    }
