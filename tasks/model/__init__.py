"""The estimator a config describes, and rows encoded into the feature table's rows."""
