"""Persistence: SQLite or PostgreSQL, the same schema and the same queries on both."""
