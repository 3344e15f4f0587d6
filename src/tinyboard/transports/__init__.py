"""asyncio.Protocol shells around the protocol logic: one module per transport."""
