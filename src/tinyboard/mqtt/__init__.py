"""Sans-IO MQTT 3.1, 3.1.1 and 5.0: packets, codec and connection state. No asyncio, no
sockets: the transports feed it bytes and write what it returns."""
