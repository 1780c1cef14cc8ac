"""Honest open and click rates: what was observed, what is inferred, what is estimated."""
