"""Real exchanges through ccxt: the session, errors, market rules, keys and the broker.

Nothing here imports ccxt at module level: the demo market must not pay its import.
"""
