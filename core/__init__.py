"""Pure domain: commands, events, rules and ports. No I/O, no asyncio, no third-party imports."""
