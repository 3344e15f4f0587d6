"""The HTTP side: ThingsBoard's device HTTP API, the REST API, WebSocket live telemetry."""
