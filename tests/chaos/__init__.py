"""Fault-injection suite: real worker processes against a PostgreSQL of its own."""
