"""Routing policies: the policy protocol, registry and built-ins."""
