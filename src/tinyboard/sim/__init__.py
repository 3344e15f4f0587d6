"""Simulated ESP8266 boards: the same protocols, payloads and habits as the firmware."""
