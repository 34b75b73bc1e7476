"""Evaluation: pairwise judging, win rates with bootstrap intervals, local benchmark scorers, the report.

Nothing here imports :mod:`rlhi_hpc.stages`; the ``eval`` and ``report`` stages call into it.
"""
