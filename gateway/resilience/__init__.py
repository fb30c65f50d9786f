"""The attempt loop's decisions, pure and on one injected clock: the plan (which target next,
when to stop, how long to wait), the loop that drives it (tenacity), the retry budget,
hedging, and the permits a request holds."""
