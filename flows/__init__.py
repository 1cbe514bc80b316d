"""Prefect flows that compose the tasks, and the ``latentfeed`` command line."""
