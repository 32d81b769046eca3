"""Fixtures of the security tests: a clock the test moves by hand."""

import pytest


class ManualClock:
    """Seconds that advance only when the test says so."""

    def __init__(self, start: float = 1_000_000.0):
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()
