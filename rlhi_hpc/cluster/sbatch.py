"""Render the sbatch templates of ``slurm/`` into a stage's ``submit.slurm``.

Templates hold ``{{name}}`` placeholders; every value is produced here, already safe for its
place in the script: names were validated against strict patterns by the config, paths and
environment values are ``shlex.quote``-d, numbers are integers, and nothing rendered may contain a
newline (which would end an ``#SBATCH`` line and start a shell one). The one exception, on
purpose, is ``cluster.setup``: shell lines from the owner of the config, rendered as written.
"""

from __future__ import annotations

import re
import shlex
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from rlhi_hpc.cluster.resources import TaskResources
from rlhi_hpc.config import ClusterConfig
from rlhi_hpc.errors import ConfigError

TEMPLATE_DIR = Path(__file__).resolve().parent.parent.parent / "slurm"
TEMPLATES = {"array": "array.sbatch", "multinode": "multinode.sbatch"}
_PLACEHOLDER = re.compile(r"\{\{\s*([a-z_]+)\s*\}\}")
DEFAULT_COMMAND = '"$PYTHON" -m rlhi_hpc.worker "$STAGE_DIR" --task-index "${SLURM_ARRAY_TASK_ID:-0}"'


def one_line(key: str, value: str) -> str:
    """`value` unchanged, or ConfigError when it holds a newline or another control character."""
    if any((ord(ch) < 32 and ch != "\t") or ord(ch) == 127 for ch in value):
        raise ConfigError(f"config key '{key}': got {value!r}; allowed: a single line without control characters")
    return value


def fill(template: str, values: Mapping[str, str]) -> str:
    """Replace every {{name}}; a placeholder without a value is an error (never left in a script)."""
    missing = sorted({m.group(1) for m in _PLACEHOLDER.finditer(template)} - set(values))
    if missing:
        raise ValueError(f"template placeholders without a value: {missing}")
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def array_spec(n_tasks: int, max_parallel: int) -> str:
    """'0-9%2' (throttled) or '0-9'."""
    spec = f"0-{n_tasks - 1}"
    return f"{spec}%{min(max_parallel, n_tasks)}" if max_parallel > 0 else spec


def sbatch_options(res: TaskResources, cluster: ClusterConfig, *, job_name: str, array: str,
                   output: str, signal: str) -> list[tuple[str, str | None]]:
    """(long option, value) pairs of the job; value None is a flag."""
    opts: list[tuple[str, str | None]] = [("job-name", job_name), ("array", array), ("time", str(res.time_min)),
                                          ("nodes", str(res.nodes)), ("ntasks-per-node", str(res.tasks_per_node)),
                                          ("cpus-per-task", str(res.cpus_per_task))]
    if res.gpus_per_node:
        opts.append(("gpus-per-node", str(res.gpus_per_node)))
    if res.mem_gb:
        opts.append(("mem", f"{res.mem_gb}G"))
    for key in ("partition", "account", "qos", "constraint"):
        if getattr(cluster, key):
            opts.append((key, getattr(cluster, key)))
    if cluster.exclusive:
        opts.append(("exclusive", None))
    opts += [("output", output), ("open-mode", "append"), ("signal", signal), ("requeue", None)]
    return opts


def directive_lines(opts: Sequence[tuple[str, str | None]]) -> str:
    lines = []
    for key, value in opts:
        if value is None:
            lines.append(f"#SBATCH --{key}")
        else:
            lines.append(f"#SBATCH --{key}={shlex.quote(one_line(f'sbatch --{key}', value))}")
    return "\n".join(lines)


def env_lines(env: Mapping[str, str]) -> str:
    """`export NAME=value` lines; names were validated by the config, values are quoted here."""
    return "\n".join(f"export {name}={shlex.quote(one_line(f'cluster.env.{name}', value))}"
                     for name, value in sorted(env.items())) or "# (none)"


def render_stage_script(*, stage: str, stage_dir: Path, kind: str, n_tasks: int, res: TaskResources,
                        cluster: ClusterConfig, command: Sequence[str] | None = None,
                        template_dir: Path = TEMPLATE_DIR) -> str:
    """The sbatch script of a stage's array (multi-node template for `kind` multinode).

    `command` replaces the worker command of the multi-node template (tests use it to look at the
    per-rank environment); it is shell-quoted word by word.
    """
    template = (template_dir / TEMPLATES["multinode" if kind == "multinode" else "array"]).read_text()
    stage_dir_s = one_line("out", str(stage_dir))
    script = stage_dir / "submit.slurm"
    job_name = f"{cluster.job_name}-{stage}"
    opts = sbatch_options(res, cluster, job_name=job_name, array=array_spec(n_tasks, cluster.max_parallel),
                          output=f"{stage_dir_s}/logs/sbatch-%A_%a.log",
                          signal=f"B:USR2@{cluster.signal_delay_s}")
    values = {
        "header": f"Rendered by rlhi_hpc for stage {stage} ({kind}, {n_tasks} task(s)) from "
                  f"slurm/{TEMPLATES['multinode' if kind == 'multinode' else 'array']}.",
        "script": shlex.quote(str(script)),
        "sbatch_options": directive_lines(opts),
        "stage_dir": shlex.quote(stage_dir_s),
        "python": shlex.quote(one_line("python", sys.executable)),
        "max_requeues": str(int(cluster.max_requeues)),
        "setup": "\n".join(cluster.setup) or "# (none)",
        "env": env_lines(cluster.env),
        "command": shlex.join(command) if command else DEFAULT_COMMAND,
    }
    return fill(template, values)
