"""Talking to providers: one attempt up to its commit point, the relay of a committed stream,
server-sent events, and the pooled connections (with the idle-timed read and the mapping of
transport errors)."""
