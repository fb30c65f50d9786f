"""The gateway's live state (config and policies swapped together, health, pools, budget)
and the config reload that swaps it."""
