"""Sending: the SMTP submission relay, the durable outbound queue and upstream delivery."""
