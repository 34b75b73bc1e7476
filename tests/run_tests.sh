#!/usr/bin/env bash
# Runs the test suite (what `make test` calls):  bash tests/run_tests.sh [pytest args]
#
# 1. As root, starts the local Slurm cluster (slurm/local-cluster.sh) unless it already runs; if it
#    cannot start, says why and goes on: the Slurm tests then skip with the reason.
# 2. Runs pytest from the repository root with the project's virtual environment.
# 3. Stops the cluster again if this script started it, and exits with pytest's status
#    ("no tests collected", exit 5, counts as a failure).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

PYTHON=${PYTHON:-.venv/bin/python}
CLUSTER=slurm/local-cluster.sh
started_cluster=0
use_local_cluster=0

# shellcheck disable=SC2317  # called by the EXIT trap
stop_cluster() {
    if ((started_cluster)); then
        bash "$CLUSTER" stop || echo "run_tests: stopping the Slurm cluster failed" >&2
    fi
}
trap stop_cluster EXIT
trap 'exit 130' INT TERM

start_cluster() {
    if ((EUID != 0)); then
        echo "run_tests: not root: the local Slurm cluster is not started (Slurm tests will skip)"
        return
    fi
    if ! command -v apt-get >/dev/null && ! command -v slurmctld >/dev/null; then
        echo "run_tests: neither apt-get nor Slurm available: no local cluster (Slurm tests will skip)"
        return
    fi
    if bash "$CLUSTER" status >/dev/null 2>&1; then
        echo "run_tests: the local Slurm cluster already runs; leaving it running afterwards"
        use_local_cluster=1
        return
    fi
    started_cluster=1 # also when start fails half-way: stop cleans up what did start
    if bash "$CLUSTER" start; then
        use_local_cluster=1
    else
        echo "run_tests: the local Slurm cluster did not start (see above); Slurm tests will skip" >&2
    fi
}

start_cluster
if ((use_local_cluster)); then
    source slurm/env.sh # exports SLURM_CONF for the tests and the jobs they submit
fi

# The vLLM-on-CPU environment for tests/test_vllm_engine.py (idempotent; they skip if it cannot be built).
bash tests/setup_vllm_venv.sh || echo "run_tests: the vLLM environment could not be built (see above); vLLM tests will skip" >&2
"$PYTHON" -m pytest "$@"
status=$?
if ((status == 5)); then
    echo "run_tests: pytest collected no tests" >&2
fi
exit "$status"
