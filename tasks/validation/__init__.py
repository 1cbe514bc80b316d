"""Validation: a polars profile of each partition, judged by Great Expectations against the config
and the champion's training data."""
from tasks.validation.checks import Reference, ValidationReport, duplicate_keys, profile, user_suite, validate, validate_days

__all__ = ["Reference", "ValidationReport", "duplicate_keys", "profile", "user_suite", "validate", "validate_days"]
