"""Building blocks of the pipeline: settings, storage, ingest, validation, tracking, encode, publish."""
