"""The Ray Data plan computes exactly what the one-machine feature functions compute."""

from datetime import timedelta

import pandas as pd
import pyarrow.parquet as pq
import pytest

from ddso.features import behaviour

pytestmark = [pytest.mark.ray, pytest.mark.integration]


def test_ray_data_plan_equals_pandas_path(ray_session, tmp_path):
    from ddso.data.generator import GeneratorConfig, generate
    from pipelines.featurize import EVENT_COLUMNS, behaviour_features, observation_end

    data = tmp_path / "data"
    generate(GeneratorConfig(customers=400, days=90, seed=5), data, progress=False)
    as_of = observation_end(data) - timedelta(days=10)
    distributed = behaviour_features(str(data / "events"), as_of)
    local = behaviour.customer_features(
        pq.read_table(data / "events", columns=EVENT_COLUMNS), as_of
    )
    distributed = distributed.sort_values("customer_id", ignore_index=True)
    pd.testing.assert_frame_equal(distributed, local, check_dtype=False, rtol=1e-12)
    assert len(local) > 300 and local["frequency_90d"].sum() > 0
