"""Turnout gateway: the aiohttp server, request pipeline, upstream client, config, CLI."""
