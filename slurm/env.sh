# shellcheck shell=bash
# Source this file to point Slurm's client commands at the local test cluster
# (started with `bash slurm/local-cluster.sh start`):  source slurm/env.sh
export SLURM_CONF="${RLHI_SLURM_DIR:-/tmp/rlhi-slurm}/etc/slurm.conf"
