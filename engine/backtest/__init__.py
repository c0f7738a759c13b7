"""Backtests: the synchronous driver's data, results and reports (issue 10)."""
