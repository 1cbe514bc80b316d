"""What a run talks to, built once from the settings and passed down to every step.

The settings carry values; these objects carry the connections: the raw store, the feature table
(with the state folder beside it), the quarantine and the MLflow registry. A flow builds one
``Resources`` at its start; tasks and the sequences they run take it instead of building their own
clients. Pickled (a Dask worker), it travels as its settings and is built again there once.
"""
from __future__ import annotations

from tasks.registry.client import Registry
from tasks.settings import Settings
from tasks.store import quarantine
from tasks.store.objects import Storage, open_storage
from tasks.store.table import FeatureTable


class Resources:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.raw: Storage = open_storage(settings.dataset.raw_uri)
        self.table = FeatureTable(settings)
        self.quarantine: Storage = quarantine.root(settings)
        self.registry = Registry(settings)

    @property
    def state(self) -> Storage:
        """The table's state folder: leases, publish records, quantisation grids, champion history."""
        return self.table.state

    def __reduce__(self):
        return Resources, (self.settings,)

    def __repr__(self) -> str:  # what Prefect shows for a task's parameter
        return f"Resources({self.settings.dataset.name})"
