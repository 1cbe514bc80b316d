"""Every expected failure: bad config, bad data, an unreachable store, a step that cannot go on.

These are reported by their message alone (no traceback); anything else is a bug and keeps its
traceback. The CLI maps ``ConfigError`` to exit 2 and the others to exit 1.
"""


import re

_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")


def redact(text: str) -> str:
    """``text`` with the credentials of every URI in it masked (``http://user:secret@host`` ->
    ``http://***@host``): what goes into messages, logs and MLflow never carries a password."""
    return _USERINFO.sub(r"\g<scheme>***@", text)


class LatentfeedError(Exception):
    """An expected failure whose message says what is wrong and how to fix it."""


class ConfigError(LatentfeedError, ValueError):
    """A config that cannot be used; the message names the file and the key."""


class StorageError(LatentfeedError, RuntimeError):
    """A store that cannot be reached or read; the message says which and why, never credentials."""


class IngestError(LatentfeedError, RuntimeError):
    """A partition that cannot be read; the message names the partition and the file."""


class SchemaMismatch(LatentfeedError, ValueError):
    """Rows that do not fit the feature table's schema; the message names the column and both types."""


class FeatureVersionError(LatentfeedError, LookupError):
    """The asked-for model version has no rows; the message lists the versions that do."""


class IncompatibleModel(LatentfeedError, ValueError):
    """A registered model version this code cannot load (saved by another format of ae_models)."""


class DamagedModel(LatentfeedError, RuntimeError):
    """A registered model version whose saved files are missing or corrupt: never taken for no model."""


class StepFailed(LatentfeedError, RuntimeError):
    """A partition or step failed for a reason the message states in full (bad data, missing input)."""


class RegistryError(StorageError):
    """The MLflow registry failed to answer a lookup; never taken for an empty answer."""


class LeaseLost(StepFailed):
    """This run's lease ran out while it held it: another run may hold it now, so this one stops."""


class PartitionChanged(StepFailed):
    """A raw partition's files changed after it was validated: run the day again."""


class PromotionAbandoned(StepFailed):
    """A version that passed the gate could not re-encode its days and will never become champion."""


class DaysFailed(StepFailed):
    """Some days of a run failed while the others were published: the run ends Failed, naming them, and
    carries what it did (``outcomes``) for the caller to report."""

    def __init__(self, message: str, outcomes: object = None):
        super().__init__(message)
        self.outcomes = outcomes

    def __reduce__(self):  # pickled with its outcomes (Prefect may keep a failed run's exception)
        return type(self), (str(self), self.outcomes)


class TableClaimed(ConfigError):
    """The feature table belongs to another dataset, or its rows of a version to another model."""
