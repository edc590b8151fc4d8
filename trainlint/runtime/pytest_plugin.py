"""pytest plugin (entry point ``pytest11``): the ``trainlint_probes`` fixture.

    def test_my_model_trains(trainlint_probes):
        trainlint_probes.assert_trains(model, (x, y), torch.nn.functional.cross_entropy)
        results = trainlint_probes.check(model, (x, y), loss_fn, probes=["loss-at-init"])

pytest imports this module in every test run of a project that has trainlint installed, so it imports nothing
heavy at import time: torch is imported when a test uses the fixture.
"""

from __future__ import annotations

from typing import Any

import pytest


class TrainlintProbes:
    """The :mod:`trainlint.runtime.api` functions, imported on first use."""

    def __getattr__(self, name: str) -> Any:
        from trainlint.runtime import api

        try:
            return getattr(api, name)
        except AttributeError:
            raise AttributeError(f"trainlint.runtime.api has no {name!r}") from None


@pytest.fixture
def trainlint_probes() -> TrainlintProbes:
    pytest.importorskip("torch")
    return TrainlintProbes()
