"""Prefect deployment definitions and schedules for latentfeed."""
