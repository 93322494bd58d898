"""The asyncio I/O shell around the protocol core."""
