"""Campaigns: a template and a recipient list, one tracked message per recipient, queued."""
