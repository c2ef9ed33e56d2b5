"""smserve.metrics: aggregated writes give the same histogram as one observe() per value (core §19)."""

from __future__ import annotations

import random

from prometheus_client import Histogram

from smserve.metrics import SECOND_BUCKETS, _observe_many


def test_observe_many_equals_observe_each():
    values = [random.Random(7).uniform(0, 0.02) for _ in range(500)]
    values += [0.0005, 0.001, 60, 61.5, 0.0]  # exactly on bounds, beyond the last finite bound, zero
    histogram = Histogram("t_seconds", "test", ["way"], buckets=SECOND_BUCKETS, registry=None)
    each, many = histogram.labels("each"), histogram.labels("many")
    for value in values:
        each.observe(value)
    _observe_many(many, values)
    assert [b.get() for b in many._buckets] == [b.get() for b in each._buckets]
    assert many._sum.get() == sum(values)
    assert abs(each._sum.get() - many._sum.get()) < 1e-9
