"""Simulated OpenAI-compatible provider with injectable faults."""
