""""No champion" and "no such version" are what MLflow's error codes and the model's aliases say, never an
error's text: a lookup MLflow failed to answer is a RegistryError."""
from __future__ import annotations

import pytest
from mlflow.entities.model_registry import ModelVersion, RegisteredModel, RegisteredModelAlias
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE, RESOURCE_DOES_NOT_EXIST, TEMPORARILY_UNAVAILABLE

from tasks.errors import ConfigError, RegistryError
from tasks.registry.client import Registry
from tasks.settings import Settings

UNSET = INVALID_PARAMETER_VALUE  # what MLflow 3 answers for an alias not set (and for a malformed request)


class Models:
    """An MlflowClient's registry lookups over ``{model: {alias: version}}`` (each model with versions 1 to
    3), answering with MLflow 3's error codes; ``by_alias`` replaces the answer to the alias lookup."""

    def __init__(self, models: dict[str, dict[str, int]], by_alias: MlflowException | None = None):
        self.models, self.by_alias = models, by_alias

    def get_registered_model(self, name: str) -> RegisteredModel:
        if name not in self.models:
            raise MlflowException(f"Registered Model with name={name} not found", RESOURCE_DOES_NOT_EXIST)
        return RegisteredModel(name, aliases=[RegisteredModelAlias(a, v) for a, v in self.models[name].items()])

    def get_model_version_by_alias(self, name: str, alias: str) -> ModelVersion:
        if self.by_alias is not None:
            raise self.by_alias
        version = self.get_registered_model(name).aliases.get(alias)
        if version is None:
            raise MlflowException(f"Registered model alias {alias} not found.", UNSET)
        return self.get_model_version(name, version)

    def get_model_version(self, name: str, version) -> ModelVersion:
        self.get_registered_model(name)
        if int(version) not in (1, 2, 3):
            raise MlflowException(f"Model Version (name={name}, version={version}) not found", RESOURCE_DOES_NOT_EXIST)
        return ModelVersion(name, str(version), creation_timestamp=1_000, run_id=f"run-{version}")

    def search_model_versions(self, filter_string: str) -> list[ModelVersion]:
        return [self.get_model_version(name, v) for name in self.models if f"'{name}'" in filter_string
                for v in (1, 2, 3)]


@pytest.fixture
def registry(monkeypatch):
    def make(client: Models) -> Registry:
        monkeypatch.setattr(Registry, "client", property(lambda self: client))
        return Registry(Settings.model_validate({"dataset": {"name": "s", "raw_uri": "raw", "real": ["x"]},
                                                 "mlflow": {"registered_model": "m"}}))

    return make


def test_no_model_or_no_alias_is_no_champion(registry):
    assert registry(Models({})).champion() is None
    assert registry(Models({"m": {}})).champion() is None
    assert registry(Models({"m": {"champion": 2}})).champion().version == 2


def test_an_unset_alias_is_told_by_the_models_aliases_not_by_the_message(registry):
    reworded = MlflowException("Alias 'champion' is not set on model 'm'", UNSET)
    assert registry(Models({"m": {}}, by_alias=reworded)).champion() is None
    # the alias was set between the two lookups: the version the model's aliases name, not "no champion"
    raced = MlflowException("Registered model alias champion not found.", UNSET)
    assert registry(Models({"m": {"champion": 3}}, by_alias=raced)).champion().version == 3


def test_a_lookup_mlflow_failed_to_answer_is_an_error_not_an_absence(registry):
    down = MlflowException("API request to /api/2.0/mlflow/registered-models/alias failed: not found upstream",
                           TEMPORARILY_UNAVAILABLE)
    with pytest.raises(RegistryError, match="champion alias of m"):
        registry(Models({"m": {"champion": 1}}, by_alias=down)).champion()


def test_a_missing_version_is_said_by_its_error_code(registry, monkeypatch):
    reg = registry(Models({"m": {"champion": 1}}))
    with pytest.raises(ConfigError, match=r"has no version 7; registered versions: \[1, 2, 3\]"):
        reg.model_version(7)

    def refused(name, version):
        raise MlflowException(f"Parameter 'version' {version} not found in request", UNSET)

    monkeypatch.setattr(reg.client, "get_model_version", refused)
    with pytest.raises(RegistryError, match="version 7 of m"):
        reg.model_version(7)
