"""Routing policies: the policy protocol, the registry, built-ins and request features.

See docs/policies.md. The gateway calls `loading.build_policy` / `loading.build_task_rules` at
config load, `features.extract` once per request, `compose.decide` to rank, and
`compose.observe` after attempts (for policies that learn).
"""
