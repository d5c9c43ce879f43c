"""The end-to-end figures bus by bus: `--bus` picks the buses, and each figure measured on
several of them is put side by side, each bus against the first.

No system runs here: the figures are made up, so what is checked is the pairing and the
arithmetic (the quick run in test_bench_quick.py covers the measuring).
"""

from __future__ import annotations

import re

import pytest

from bench.figures import Figure, Goal, comparison_table, document, figure, side_by_side
from bench.runner import parser


def _latency(bus: str | None, measured: float, baseline: float) -> Figure:
    return figure("latency", "create-to-ready p50, 2 clusters", "ms", "lower",
                  [(measured, baseline)], "direct path", Goal(1.5), bus=bus)


def test_bus_defaults_to_both_buses_in_order() -> None:
    assert parser().parse_args([]).bus == ("zmq", "jetstream")
    assert parser().parse_args(["--bus", "jetstream, zmq"]).bus == ("jetstream", "zmq")
    assert parser().parse_args(["--bus", "jetstream,jetstream"]).bus == ("jetstream",)


@pytest.mark.parametrize("text", ["", "kafka", "zmq,kafka"])
def test_an_unknown_bus_is_refused(text: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _ = parser().parse_args(["--bus", text])
    assert "--bus" in capsys.readouterr().err


def test_a_figure_on_two_buses_is_compared_to_the_first_bus() -> None:
    zmq = _latency("zmq", 60.0, 30.0)
    jetstream = _latency("jetstream", 90.0, 36.0)
    other = figure("convergence", "daemon CPU per account-cluster", "ms", "lower",
                   [(8.0, 2.0)], "bare client", bus="zmq")

    [compared] = side_by_side([zmq, other, jetstream])

    assert compared.figures == (zmq, jetstream)
    measured, ratio = compared.versus_first(jetstream)
    assert measured == pytest.approx(1.5)
    assert ratio == pytest.approx((90 / 36) / (60 / 30))
    as_json = compared.to_json()
    assert as_json["buses"]["zmq"] == {"measured": 60.0, "baseline": 30.0, "ratio": 2.0, "met": False}
    assert as_json["versus"] == {"jetstream": {"of": "zmq", "measured": 1.5, "ratio": 1.25}}
    text = comparison_table([compared])
    rows = [m[1] for m in re.finditer(r"^ {4}(\S+) +measured ", text, re.MULTILINE)]
    assert rows == ["zmq", "jetstream"]
    assert "jetstream / zmq: 1.50 measured, 1.25 in ratio to the baseline" in text


def test_figures_without_a_bus_or_on_one_bus_are_not_compared() -> None:
    figures = [_latency(None, 60.0, 30.0), _latency("zmq", 60.0, 30.0)]

    assert side_by_side(figures) == []
    doc = document(figures, mode="quick", command="fabric bench", host={}, seconds=1.0)
    assert doc["side_by_side"] == []
    assert [f["bus"] for f in doc["figures"]] == [None, "zmq"]
