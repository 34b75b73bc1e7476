"""One module per stage: `plan` + `run_shard`, nothing else."""
