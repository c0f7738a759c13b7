"""Optimization: agent, synthesis, risk and approval settings tuned on history, walk-forward.

``cma optimize`` (``tui/optimize_cmd.py``) drives it: :mod:`optimize.space` reads
the search space, :mod:`optimize.windows` cuts the walk-forward windows,
:mod:`optimize.trial` scores one set of parameters through the backtest driver
(the same core as the live shell), :mod:`optimize.study` keeps the Optuna study
(a journal file on this machine, or an RDB such as PostgreSQL shared by several)
and runs the worker processes, and :mod:`optimize.result` reads a study back into
:class:`reports.optimization.Optimization` and writes the config fragment.
Optuna is imported only here, never on the console's path.
"""
