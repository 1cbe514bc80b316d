"""Building blocks of the pipeline (settings, storage, ingest, validation, fitting, tracking, publishing, the
feature table) and, in ``steps``, the Prefect tasks that run them."""
