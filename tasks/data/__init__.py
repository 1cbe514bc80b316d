"""Raw data: partitions read with polars, the training window, the demo dataset."""
