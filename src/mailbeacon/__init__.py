"""mailbeacon: self-hosted email open and click tracking that tells the truth about opens."""

__version__ = "0.1.0"
