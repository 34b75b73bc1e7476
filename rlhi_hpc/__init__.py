"""rlhi_hpc: reinforcement learning from human interaction as restartable Slurm batch jobs."""

__version__ = "0.1.0"
