from datetime import UTC, datetime

import pytest

from ddso.features import affinity, behaviour, enrichment, financial
from ddso.features.registry import BY_NAME, FEATURES
from ddso.features.sets import CUSTOMER_FEATURES, FEATURE_SET_VERSION
from ddso.stores.state import CustomerState

pytestmark = pytest.mark.unit


def test_registry_names_exactly_the_computed_features():
    online = CustomerState(daily={}).features("c", datetime(2025, 1, 1, tzinfo=UTC))
    online_only = set(online) - set(behaviour.FEATURE_COLUMNS)
    computed = (
        set(behaviour.FEATURE_COLUMNS)
        | set(financial.FEATURE_COLUMNS)
        | set(enrichment.FEATURE_COLUMNS)
        | set(affinity.FEATURE_COLUMNS)
        | online_only
    )
    assert set(BY_NAME) == computed and len(FEATURES) == len(BY_NAME)
    assert set(CUSTOMER_FEATURES) <= set(BY_NAME)


def test_windows_match_the_names_and_every_spec_is_complete():
    for f in FEATURES:
        assert f.description.endswith(".") and f.version == FEATURE_SET_VERSION
        suffix = f.name.rsplit("_", 1)[-1]
        if suffix.endswith("d") and suffix[:-1].isdigit():
            assert f.window_days == int(suffix[:-1]), f.name
