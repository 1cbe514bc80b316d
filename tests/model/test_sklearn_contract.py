"""scikit-learn's own estimator checks on AutoencoderReducer, each check a test.

The estimator under check is small (1 latent, one hidden layer of 8, 2 passes, CPU) so the whole run
takes seconds: the checks test the API, not the model's quality (test_reducer_quality.py does that).
"""
from __future__ import annotations

import pytest

pytest.importorskip("sklearn", minversion="1.8")  # parametrize_with_checks(expected_failed_checks, xfail_strict)

from sklearn.utils import estimator_checks  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from ae_models import AutoencoderReducer  # noqa: E402


def _small() -> AutoencoderReducer:
    return AutoencoderReducer(latent_dim=1, hidden=(8,), epochs=2, device="cpu")


# Checks the estimator fails by design; xfail_strict: a check listed here that passes fails the run.
EXPECTED_FAILED_CHECKS = {
    "check_fit2d_1feature": "refuses 1 feature: a plain kind's latent_dim must be below the input width",
    "check_dtype_object": "object columns are categories (each value read as text), so a dict is a "
                          "category rather than a TypeError",
}


@parametrize_with_checks([_small()], expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS, xfail_strict=True)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


# Checks scikit-learn runs on its own transformers but check_estimator does not: output names,
# set_output (pandas and polars output), partial_fit's width check. Not here, by design:
# check_dataframe_column_names_consistency, since a frame is read by column name, so reordered or
# extra columns are read correctly rather than refused.
@pytest.mark.parametrize("name", [
    "check_transformer_get_feature_names_out",
    "check_transformer_get_feature_names_out_pandas",
    "check_set_output_transform",
    "check_set_output_transform_pandas",
    "check_global_output_transform_pandas",
    "check_set_output_transform_polars",
    "check_global_set_output_transform_polars",
    "check_estimators_partial_fit_n_features",
])
def test_transformer_checks_beyond_check_estimator(name):
    getattr(estimator_checks, name)(type(_small()).__name__, _small())
