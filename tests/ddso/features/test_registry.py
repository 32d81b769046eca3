from datetime import UTC, datetime

import pandas as pd
import pytest

from ddso.features import affinity, behaviour, enrichment, financial, graph
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
        | set(graph.CUSTOMER_COLUMNS)
        | set(graph.ITEM_COLUMNS)
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


def test_graph_specs_name_what_the_graph_functions_produce():
    customers, items = graph.graph_features(
        pd.DataFrame(columns=["customer_id", "type", "event_time", "event_id", "lines"])
    )
    groups = {f.name: f.group for f in FEATURES}
    assert {n for n, g in groups.items() if g == "graph"} == set(customers.columns) - {
        "customer_id"
    }
    assert {n for n, g in groups.items() if g == "graph_item"} == set(items.columns) - {
        "product_id"
    }
    assert not set(graph.CUSTOMER_COLUMNS) & set(CUSTOMER_FEATURES)
