"""Executors: in-process, local worker processes, and Slurm through submitit."""
