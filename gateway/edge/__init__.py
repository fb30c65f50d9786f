"""The HTTP edge: the server and its connections (header/body timeouts, connection limit),
the aiohttp app and its error answers in OpenAI's shape, reading a request body within its
bounds, which headers cross, and the drain at shutdown."""
