"""modelplane: a self-hosted model platform for teams whose product is AI."""

__version__ = "0.1.0"
