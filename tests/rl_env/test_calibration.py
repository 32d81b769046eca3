"""Calibration: business as usual in the default environment gives the DDSO seed's "before".

The seed reports conversion 0.9% of leads and graduation 0.69% before optimisation; the
generator's legacy campaign is calibrated to them, and so is this environment under the same
campaign (:class:`rl_env.policies.BusinessAsUsual`): each target must lie inside the 99%
Wilson interval of the rate measured over a cohort of 50,000 of the generator's customers.
"""

from __future__ import annotations

import pytest

from rl_env.cohort import run_cohort, wilson_interval
from rl_env.config import JourneyConfig

pytestmark = pytest.mark.unit

CUSTOMERS = 50_000
TARGETS = {"enrolled": 0.009, "graduated": 0.0069}


@pytest.fixture(scope="module")
def cohort() -> dict:
    return run_cohort(JourneyConfig(), customers=CUSTOMERS, seed=0)


@pytest.mark.parametrize("event", list(TARGETS))
def test_business_as_usual_reproduces_the_seed_rates(cohort, event):
    low, high = wilson_interval(cohort[event], cohort["leads"], z=2.576)
    assert low <= TARGETS[event] <= high, (event, cohort[event] / cohort["leads"], low, high)


def test_the_campaign_looks_like_the_legacy_one(cohort):
    """About two offers per lead over the window, most leads reached, few complaints."""
    assert 1.6 <= cohort["contacts_per_lead"] <= 2.0
    assert 0.7 <= cohort["contacted_rate"] <= 0.9
    assert cohort["complained_rate"] < 0.15 and cohort["churned_rate"] < 0.1
