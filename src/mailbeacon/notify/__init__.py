"""Telling users what happened, and only when a person did it: events published once a hit's
verdict has settled, signed webhooks, a live stream and alert emails."""
