"""What goes into a tracked email: signed tokens, the pixel, the per-recipient registration."""
