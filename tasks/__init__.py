"""The building blocks the flows compose, grouped by concern.

- ``settings``, ``errors``, ``names``, ``outcomes``: the vocabulary every layer shares.
- ``resources``: what a run talks to (stores, feature table, registry), built once and passed down.
- ``store/``: object storage (local and S3), the Delta feature table, leases, history, quarantine.
- ``registry/``: MLflow runs, registered versions, the champion alias, the served model.
- ``validation/``: the polars profile of a partition, judged by Great Expectations.
- ``data/``: raw partitions, the training window, the demo dataset.
- ``model/``: the estimator a config describes; rows encoded into table rows.
- ``rules/``: pure decisions: when to retrain, the promotion gate, the backfill plan, a nightly's days.
- ``publish``, ``promote``, ``training``: the three sequences, each with one owner.
- ``runtime``: what every entry point sets up first (client caps, log filters, service checks).
- ``steps``: the Prefect tasks (retries declared); ``limits``, ``preflight``, ``cost``, ``gpu_pool``.
- ``features/``: the reader API ML teams import (no Prefect, Great Expectations or torch).
"""
