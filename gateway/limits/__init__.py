"""Per-client-key rate limits and spend budgets (`clients.<name>.limits`), shared by the fleet.

    windows  the fixed UTC windows limits are counted in (minute, day, month)
    counter  one limit's count: the fleet's total at the last sync + this replica's since
    ledger   every key's counters; admission and accounting (the request path: memory only)
    sync     the background round trip to Redis, one per period (health.fleet's settings)
    edge     admission before routing: the 429s, the x-ratelimit-* headers
    metering each settled attempt's usage -> the key's tokens and spend (a listener)
    labels   a key's metric attributes: its configured name and labels

The request path never awaits Redis: `Ledger.admit` and `Ledger.account` are O(1) on local
counters; `LimitSync` batches the deltas into Redis and reads the fleet's totals back.
"""
