"""Scheduled syncs: APScheduler wiring, the leader lock, run records, the ops pages."""
