"""tinyboard: a small, fast, self-hosted IoT server that speaks the ThingsBoard device API."""

__version__ = "0.1.0"
