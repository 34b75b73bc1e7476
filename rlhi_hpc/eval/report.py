"""Render the results report: ``report.md`` (Markdown tables), CSV files and PNG plots.

Inputs are *runs*: a label, the sweep overrides that define it (empty outside sweeps) and the
stage directories of its pipeline. Everything is read from finished shards only (done markers):

* UserEval and reference win rates from the eval stage's verdict records (intervals recomputed
  over all shards with the report's bootstrap settings), math accuracy from its graded answers;
* pair statistics from the pairs stage's done markers (``pair_stats``);
* DPO curves from ``<dpo stage dir>/metrics.jsonl``;
* throughput and GPU-hours from every stage's done markers (seconds x GPUs of a task).

A missing input (no dpo stage, an unfinished eval) gives a "not available" line, never an error.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rlhi_hpc.config import ReportConfig
from rlhi_hpc.eval.results import summarize_math, summarize_verdicts
from rlhi_hpc.eval.winrate import WinRate, format_rate
from rlhi_hpc.paths import StagePaths
from rlhi_hpc.records import read_jsonl
from rlhi_hpc.shards import done_ids, read_json

log = logging.getLogger(__name__)
TURN_TITLES = {"initial": "Initial turns", "follow_up": "Follow-up turns", "all": "All turns"}
CPU_STAGES = frozenset({"ingest", "pairs", "report"})


@dataclass(frozen=True, kw_only=True)
class RunInfo:
    """One pipeline (or sweep point) the report covers."""

    label: str
    stages: dict[str, Path]
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass(kw_only=True)
class Section:
    """Markdown lines of a report section and the files it wrote."""

    lines: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# Reading runs
# --------------------------------------------------------------------------------------------


def sweep_runs(root: Path, name: str) -> list[RunInfo]:
    """The points of ``<root>/sweeps/<name>/sweep.json`` as runs (empty when the file is missing)."""
    path = root / "sweeps" / name / "sweep.json"
    if not path.is_file():
        return []
    info = read_json(path)
    return [RunInfo(label=p["id"], overrides=dict(p["overrides"]), stages={k: root / v for k, v in p["stages"].items()})
            for p in info["points"]]


def finished_files(stage_dir: Path) -> list[Path]:
    """Output files of the finished shards of a stage directory, in shard order."""
    paths = StagePaths(stage_dir)
    return [paths.out(sid) for sid in sorted(done_ids(paths)) if paths.out(sid).exists()]


def done_markers(stage_dir: Path) -> list[dict[str, Any]]:
    paths = StagePaths(stage_dir)
    return [read_json(paths.done(sid)) for sid in sorted(done_ids(paths))]


def stage_config(stage_dir: Path) -> dict[str, Any]:
    path = StagePaths(stage_dir).config
    if not path.is_file():
        return {}
    return yaml.safe_load(path.read_text()) or {}


def _get(tree: dict[str, Any], dotted: str) -> Any:
    node: Any = tree
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def eval_rows(run: RunInfo, task: str) -> list[dict[str, Any]]:
    if "eval" not in run.stages:
        return []
    return [row for path in finished_files(run.stages["eval"]) for row in read_jsonl(path) if row.get("task") == task]


def math_rows(run: RunInfo) -> list[dict[str, Any]]:
    if "eval" not in run.stages:
        return []
    return [row for path in finished_files(run.stages["eval"]) if path.stem == "math" for row in read_jsonl(path)]


# --------------------------------------------------------------------------------------------
# Markdown and CSV helpers
# --------------------------------------------------------------------------------------------


def md_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    """A Markdown table (``|`` in cells escaped)."""
    def cell(v: Any) -> str:
        return ("" if v is None else str(v)).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(map(cell, headers)) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(map(cell, row)) + " |" for row in rows]
    return lines


def write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> str:
    """Write dict rows (union of keys as columns); return the file name."""
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: json.dumps(v) if isinstance(v, (dict, list)) else v for k, v in row.items()})
    return path.name


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _rate(row: dict[str, Any]) -> str:
    keys = ("n", "wins", "ties", "losses", "unparseable", "win_rate", "ci_low", "ci_high", "confidence")
    return format_rate(WinRate(**{k: row[k] for k in keys}))


def _not_available(what: str, why: str) -> list[str]:
    return [f"_{what}: not available ({why})._", ""]


def _short(stage_dir: Path) -> str:
    return stage_dir.name


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# --------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------


def runs_section(runs: Sequence[RunInfo]) -> Section:
    rows = []
    for run in runs:
        models = next((m.get("models") for m in done_markers(run.stages["eval"]) if m.get("models")), {}) \
            if "eval" in run.stages else {}
        settings = ", ".join(f"{k}={v}" for k, v in run.overrides.items()) or "-"
        rows.append([run.label, settings, models.get("candidate", "-"), models.get("baseline", "-"),
                     models.get("judge", "-"), ", ".join(run.stages)])
    lines = ["## Runs", "", *md_table(["run", "overrides", "candidate", "baseline", "judge", "stages"], rows), ""]
    return Section(lines=lines)


def winrate_rows(runs: Sequence[RunInfo], cfg: ReportConfig) -> list[dict[str, Any]]:
    """UserEval win rates per run, comparison, turn type (initial/follow_up/all) and dimension."""
    out: list[dict[str, Any]] = []
    for run in runs:
        rows = eval_rows(run, "usereval")
        for r in summarize_verdicts(rows, samples=cfg.bootstrap_samples, confidence=cfg.confidence, seed=0,
                                    by=("comparison", "turn_type")):
            out.append({"run": run.label, **r})
    return out


def winrate_section(rows: Sequence[dict[str, Any]], out_dir: Path, cfg: ReportConfig) -> Section:
    sec = Section(lines=["## UserEval win rates", ""])
    if not rows:
        sec.lines += _not_available("UserEval win rates", "no finished eval stage with UserEval verdicts")
        return sec
    sec.files.append(write_csv(out_dir / "winrates.csv", rows))
    sec.lines += [f"Candidate vs baseline on held-out users, judged in both orders. Win rate = wins + ½ ties over "
                  f"judged comparisons, [{100 * cfg.confidence:.0f}% bootstrap interval]; unparseable verdicts are "
                  "counted, not dropped.", ""]
    headers = ["run", "comparison", "dimension", "win rate", "W / T / L", "unparseable", "n"]
    for turn in ("initial", "follow_up", "all"):
        sel = [r for r in rows if r["turn_type"] == turn]
        if not sel:
            continue
        sec.lines += [f"### {TURN_TITLES[turn]}", ""]
        sec.lines += md_table(headers, ([r["run"], r["comparison"], r["dimension"], _rate(r),
                                         f"{r['wins']} / {r['ties']} / {r['losses']}", r["unparseable"],
                                         r["n"] + r["unparseable"]] for r in sel))
        sec.lines.append("")
    if cfg.plots:
        sec.files.append(plot_winrates(rows, out_dir / "winrates.png", cfg))
        sec.lines += ["![UserEval win rates](winrates.png)", ""]
    return sec


def plot_winrates(rows: Sequence[dict[str, Any]], path: Path, cfg: ReportConfig) -> str:
    """One panel per dimension; horizontal bars per (run, comparison), one colour per turn type, CI error bars."""
    plt = _plt()
    dims = sorted({r["dimension"] for r in rows}, key=lambda d: (d != "overall", d))
    series = list(dict.fromkeys((r["run"], r["comparison"]) for r in rows))
    turns = [t for t in ("initial", "follow_up", "all") if any(r["turn_type"] == t for r in rows)]
    if len(series) > 16:
        turns = ["all"]
    height = max(2.5, 0.28 * len(series) * len(turns) + 1.2)
    fig, axes = plt.subplots(1, len(dims), figsize=(4.2 * len(dims) + 2.5, height), sharey=True, squeeze=False)
    width = 0.8 / len(turns)
    index = {r: {} for r in dims}
    for r in rows:
        index[r["dimension"]][(r["run"], r["comparison"], r["turn_type"])] = r
    for ax, dim in zip(axes[0], dims, strict=True):
        for j, turn in enumerate(turns):
            ys, xs, lo, hi = [], [], [], []
            for i, key in enumerate(series):
                r = index[dim].get((*key, turn))
                if r is None or r["win_rate"] is None:
                    continue
                ys.append(i + (j - (len(turns) - 1) / 2) * width)
                xs.append(100 * r["win_rate"])
                lo.append(100 * (r["win_rate"] - (r["ci_low"] if r["ci_low"] is not None else r["win_rate"])))
                hi.append(100 * ((r["ci_high"] if r["ci_high"] is not None else r["win_rate"]) - r["win_rate"]))
            ax.barh(ys, xs, height=width, xerr=[lo, hi], capsize=2, label=TURN_TITLES[turn])
        ax.axvline(50, color="grey", linestyle="--", linewidth=1)
        ax.set_xlim(0, 100)
        ax.set_xlabel("win rate (%)")
        ax.set_title(dim.replace("_", " "))
    axes[0][0].set_yticks(range(len(series)))
    axes[0][0].set_yticklabels([f"{run} · {cmp}" if len({s[0] for s in series}) > 1 else cmp for run, cmp in series],
                               fontsize=8)
    axes[0][0].set_ylabel("comparison")
    axes[0][0].invert_yaxis()
    axes[0][-1].legend(loc="lower right", fontsize=8, title="turn type")
    fig.suptitle(f"UserEval win rate of the candidate ({100 * cfg.confidence:.0f}% bootstrap CI)")
    fig.tight_layout()
    fig.savefig(path, dpi=cfg.dpi)
    plt.close(fig)
    return path.name


def alpaca_section(runs: Sequence[RunInfo], out_dir: Path, cfg: ReportConfig) -> Section:
    sec = Section(lines=["## Win rate against reference answers (AlpacaEval style)", ""])
    table: list[dict[str, Any]] = []
    for run in runs:
        rows = eval_rows(run, "alpaca")
        marker = next((m for m in done_markers(run.stages["eval"]) if m.get("task") == "alpaca"), None) \
            if "eval" in run.stages else None
        lengths = {s["role"]: s for s in (marker or {}).get("alpaca", [])}
        for r in summarize_verdicts(rows, samples=cfg.bootstrap_samples, confidence=cfg.confidence, seed=0,
                                    by=("candidate", "candidate_model")):
            ln = lengths.get(r["candidate"], {})
            table.append({"run": run.label, **r, **{k: ln.get(k) for k in (
                "avg_chars", "avg_words", "avg_tokens", "reference_avg_chars", "reference_avg_words")}})
    if not table:
        sec.lines += _not_available("Reference win rates", "no finished eval shard 'alpaca' (set eval.alpaca_path)")
        return sec
    sec.files.append(write_csv(out_dir / "alpaca.csv", table))
    sec.lines += ["Average answer length is shown beside the win rate: longer answers tend to win.", ""]
    sec.lines += md_table(["run", "model", "dimension", "win rate vs reference", "W / T / L", "unparseable",
                           "avg chars", "avg words", "avg tokens", "reference avg chars"],
                          ([t["run"], f"{t['candidate']}: {t['candidate_model']}", t["dimension"], _rate(t),
                            f"{t['wins']} / {t['ties']} / {t['losses']}", t["unparseable"], t["avg_chars"],
                            t["avg_words"], t["avg_tokens"], t["reference_avg_chars"]] for t in table))
    sec.lines.append("")
    return sec


def math_section(runs: Sequence[RunInfo], out_dir: Path) -> Section:
    sec = Section(lines=["## Math accuracy (exact match on final answers)", ""])
    table = [{"run": run.label, **row} for run in runs for row in summarize_math(math_rows(run))]
    if not table:
        sec.lines += _not_available("Math accuracy", "no finished eval shard 'math' (set eval.math_files)")
        return sec
    sec.files.append(write_csv(out_dir / "math.csv", table))
    sec.lines += md_table(["run", "model", "benchmark", "problems", "correct", "accuracy"],
                          ([t["run"], f"{t['role']}: {t['model']}", t["benchmark"], t["n"],
                            "-" if t["correct"] is None else t["correct"], _pct(t["accuracy"])] for t in table))
    sec.lines.append("")
    return sec


def _overall(rows: Sequence[dict[str, Any]], run: str, comparison: str) -> dict[str, Any] | None:
    return next((r for r in rows if r["run"] == run and r["comparison"] == comparison and r["turn_type"] == "all"
                 and r["dimension"] == "overall"), None)


def run_settings(run: RunInfo) -> dict[str, Any]:
    """beta, data mix and training persona of a run with a dpo stage (from its resolved config)."""
    if "dpo" not in run.stages:
        return {}
    tree = stage_config(run.stages["dpo"])
    return {"beta": _get(tree, "dpo.beta"), "mix": _get(tree, "pairs.mix"), "persona": _get(tree, "dpo.persona")}


def final_metrics(run: RunInfo) -> dict[str, Any]:
    rows = dpo_metrics(run)
    return rows[-1] if rows else {}


def dpo_metrics(run: RunInfo) -> list[dict[str, Any]]:
    """The dpo stage's per-step metrics (``train/metrics.jsonl``, or the path its done marker names)."""
    if "dpo" not in run.stages:
        return []
    d = run.stages["dpo"]
    named = [Path(m["metrics"]) for m in done_markers(d) if isinstance(m.get("metrics"), str)]
    path = next((p for p in [*named, d / "train" / "metrics.jsonl", d / "metrics.jsonl"] if p.is_file()), None)
    if path is None:
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut by a killed writer
    return [r for r in rows if "step" in r]


def sweep_section(runs: Sequence[RunInfo], rates: Sequence[dict[str, Any]], out_dir: Path,
                  cfg: ReportConfig) -> Section:
    """One row per run (grid point) and win rate against beta per data mix."""
    sec = Section(lines=["## Win rate against β per data mix", ""])
    if not any(run.overrides or "dpo" in run.stages for run in runs):
        sec.lines += _not_available("Win rate against β", "no dpo stage in this run; sweeps over dpo.beta: "
                                    "`python -m rlhi_hpc.launch sweep=<name>`")
        return sec
    comparisons = list(dict.fromkeys(r["comparison"] for r in rates))
    axes = list(dict.fromkeys(k for run in runs for k in run.overrides))
    table: list[dict[str, Any]] = []
    for run in runs:
        row: dict[str, Any] = {"run": run.label, **{k: run.overrides.get(k) for k in axes},
                               **{f"setting.{k}": v for k, v in run_settings(run).items()}}
        for cmp in comparisons:
            r = _overall(rates, run.label, cmp)
            row[f"overall: {cmp}"] = _rate(r) if r else "n/a"
            row[f"win_rate: {cmp}"] = r["win_rate"] if r else None
            row[f"ci_low: {cmp}"], row[f"ci_high: {cmp}"] = (r["ci_low"], r["ci_high"]) if r else (None, None)
        row["dpo final loss"] = final_metrics(run).get("loss")
        table.append(row)
    sec.files.append(write_csv(out_dir / "points.csv", table))
    # Settings read from each run's config, unless a sweep axis already shows them.
    settings = [(key, title) for key, axis, title in (("beta", "dpo.beta", "β"), ("mix", "pairs.mix", "mix"),
                                                      ("persona", "dpo.persona", "persona (training)"))
                if axis not in axes]
    headers = ["run", *axes, *[title for _, title in settings], *[f"overall: {c}" for c in comparisons],
               "DPO final loss"]
    sec.lines += md_table(headers, ([t["run"], *[_cell(t[k]) for k in axes],
                                     *[_cell(t.get(f"setting.{key}")) for key, _ in settings],
                                     *[t[f"overall: {c}"] for c in comparisons], _num(t["dpo final loss"])]
                                    for t in table))
    sec.lines.append("")
    if not any(t.get("setting.beta") is not None for t in table) or not comparisons:
        sec.lines += _not_available("Win rate against β", "needs runs with a dpo stage and UserEval verdicts")
    elif cfg.plots:
        sec.files.append(plot_beta(table, comparisons, axes, out_dir / "winrate_vs_beta.png", cfg))
        sec.lines += ["![Win rate against beta](winrate_vs_beta.png)", ""]
    return sec


def _cell(v: Any) -> str:
    return "-" if v is None else json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else str(v)


def _num(v: Any) -> str:
    return "n/a" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)


def plot_beta(table: Sequence[dict[str, Any]], comparisons: Sequence[str], axes: Sequence[str], path: Path,
              cfg: ReportConfig) -> str:
    """Overall win rate (all turns) against beta; one line per data mix / other settings; one panel per comparison."""
    plt = _plt()
    other = [a for a in axes if a != "dpo.beta"]
    fig, panels = plt.subplots(1, len(comparisons), figsize=(5.5 * len(comparisons), 4), squeeze=False)
    for ax, cmp in zip(panels[0], comparisons, strict=True):
        groups: dict[str, list[tuple[float, float, float, float]]] = defaultdict(list)
        for t in table:
            beta, rate = t.get("setting.beta"), t.get(f"win_rate: {cmp}")
            if beta is None or rate is None:
                continue
            label = ", ".join(f"{a}={_cell(t[a])}" for a in other) if other else \
                f"mix={t.get('setting.mix')}, persona={t.get('setting.persona')}"
            low = t[f"ci_low: {cmp}"] if t[f"ci_low: {cmp}"] is not None else rate
            high = t[f"ci_high: {cmp}"] if t[f"ci_high: {cmp}"] is not None else rate
            groups[label].append((float(beta), 100 * rate, 100 * (rate - low), 100 * (high - rate)))
        for label, pts in sorted(groups.items()):
            pts.sort()
            ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[[p[2] for p in pts], [p[3] for p in pts]],
                        marker="o", capsize=3, label=label)
        ax.axhline(50, color="grey", linestyle="--", linewidth=1)
        ax.set_xscale("log")
        betas = sorted({p[0] for pts in groups.values() for p in pts})
        ax.minorticks_off()
        ax.set_xticks(betas, [f"{b:g}" for b in betas])
        ax.set_xlabel("DPO β (log scale)")
        ax.set_ylabel("overall win rate, all turns (%)")
        ax.set_ylim(0, 100)
        ax.set_title(cmp, fontsize=9)
        if groups:
            ax.legend(fontsize=7, title="data mix / setting", title_fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=cfg.dpi)
    plt.close(fig)
    return path.name


def pairs_section(runs: Sequence[RunInfo], out_dir: Path) -> Section:
    sec = Section(lines=["## Pair statistics per source and filter", ""])
    dirs = list(dict.fromkeys(run.stages["pairs"] for run in runs if "pairs" in run.stages))
    long: list[dict[str, Any]] = []
    for d in dirs:
        totals: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for marker in done_markers(d):
            stats = marker.get("pair_stats") or {}
            for src, n in (stats.get("inputs") or {}).items():
                totals[src]["inputs"] += n
            for src, n in (stats.get("kept") or {}).items():
                totals[src]["kept"] += n
            for key, n in (stats.get("dropped_by_source") or {}).items():
                src, _, reason = key.partition(":")
                totals[src][f"dropped: {reason}"] += n
        for src, counts in sorted(totals.items()):
            long += [{"pairs_dir": _short(d), "source": src, "filter": k, "count": v} for k, v in counts.items()]
    if not long:
        sec.lines += _not_available("Pair statistics", "no finished pairs stage with pair_stats")
        return sec
    sec.files.append(write_csv(out_dir / "pairs.csv", long))
    filters = list(dict.fromkeys(r["filter"] for r in long if r["filter"].startswith("dropped")))
    keyed = defaultdict(dict)
    for r in long:
        keyed[(r["pairs_dir"], r["source"])][r["filter"]] = r["count"]
    rows = []
    for (d, src), c in keyed.items():
        kept, inputs = c.get("kept", 0), c.get("inputs", 0)
        rows.append([d, src, inputs, kept, _pct(kept / inputs) if inputs else "n/a", *[c.get(f, 0) for f in filters]])
    sec.lines += md_table(["pairs stage", "source", "inputs", "kept", "kept %", *filters], rows)
    sec.lines.append("")
    return sec


def dpo_section(runs: Sequence[RunInfo], out_dir: Path, cfg: ReportConfig) -> Section:
    sec = Section(lines=["## DPO training", ""])
    curves = {run.label: dpo_metrics(run) for run in runs}
    curves = {k: v for k, v in curves.items() if v}
    if not curves:
        sec.lines += _not_available("DPO curves", "no dpo stage with train/metrics.jsonl in these runs")
        return sec
    sec.files.append(write_csv(out_dir / "dpo_metrics.csv", [{"run": k, **m} for k, v in curves.items() for m in v]))
    rows = []
    for run in runs:
        ms = curves.get(run.label)
        if not ms:
            continue
        last = ms[-1]
        speeds = [m["tokens_per_s"] for m in ms if isinstance(m.get("tokens_per_s"), (int, float))]
        rows.append([run.label, _cell(run_settings(run).get("beta")), last.get("step"), _num(ms[0].get("loss")),
                     _num(last.get("loss")), _num(last.get("margin")), _num(last.get("accuracy")),
                     f"{sum(speeds) / len(speeds):.0f}" if speeds else "n/a"])
    sec.lines += md_table(["run", "β", "steps", "first loss", "final loss", "final margin", "final accuracy",
                           "mean tokens/s"], rows)
    sec.lines.append("")
    if cfg.plots:
        sec.files.append(plot_dpo(curves, out_dir / "dpo_curves.png", cfg))
        sec.lines += ["![DPO loss and margin](dpo_curves.png)", ""]
    return sec


def plot_dpo(curves: dict[str, list[dict[str, Any]]], path: Path, cfg: ReportConfig) -> str:
    plt = _plt()
    metrics = [("loss", "DPO loss"), ("margin", "reward margin (chosen - rejected)")]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, (key, title) in zip(axes, metrics, strict=True):
        for label, rows in curves.items():
            pts = [(m["step"], m[key]) for m in rows if isinstance(m.get(key), (int, float))]
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="." if len(pts) < 40 else None, label=label)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel(key)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, title="run", title_fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=cfg.dpi)
    plt.close(fig)
    return path.name


def task_gpus(stage: str, tree: dict[str, Any], marker: dict[str, Any]) -> int:
    """GPUs one task of `stage` held: the marker's ``gpus`` when recorded, else estimated from the config."""
    if isinstance(marker.get("gpus"), (int, float)):
        return int(marker["gpus"])
    per_node = int(_get(tree, "cluster.gpus_per_node") or 0)
    if per_node == 0 or stage in CPU_STAGES:
        return 0
    if stage == "dpo":
        return int(_get(tree, "dpo.nodes") or 1) * per_node
    return min(per_node, int(_get(tree, "model.tensor_parallel_size") or 1))


def throughput_rows(runs: Sequence[RunInfo]) -> list[dict[str, Any]]:
    """One row per distinct stage directory of the runs (shared directories once)."""
    rows: list[dict[str, Any]] = []
    for d, name in dict.fromkeys((p, n) for run in runs for n, p in run.stages.items()):
        paths = StagePaths(d)
        if not paths.manifest.exists():
            rows.append({"stage": name, "dir": _short(d), "shards": 0, "done": 0})
            continue
        markers = done_markers(d)
        tree = stage_config(d)
        seconds = sum(float(m.get("seconds", 0.0)) for m in markers)
        gpu_s = sum(float(m.get("seconds", 0.0)) * task_gpus(name, tree, m) for m in markers)
        rin = sum(m.get("counts", {}).get("records_in", 0) for m in markers)
        tokens = sum(m.get("counts", {}).get("generated_tokens", 0) for m in markers)
        rows.append({"stage": name, "dir": _short(d), "shards": len(read_json(paths.manifest)["shards"]),
                     "done": len(markers), "records_in": rin,
                     "records_out": sum(m.get("counts", {}).get("records_out", 0) for m in markers),
                     "seconds": round(seconds, 2), "records_per_s": round(rin / seconds, 2) if seconds else None,
                     "tokens_per_s": round(tokens / seconds, 1) if seconds and tokens else None,
                     "gpus_per_task": task_gpus(name, tree, markers[0]) if markers else None,
                     "gpu_hours": round(gpu_s / 3600, 4)})
    return rows


def throughput_section(runs: Sequence[RunInfo], out_dir: Path, cfg: ReportConfig) -> Section:
    sec = Section(lines=["## Throughput and GPU-hours per stage", ""])
    rows = throughput_rows(runs)
    if not any(r["done"] for r in rows):
        sec.lines += _not_available("Throughput", "no finished shard in these runs")
        return sec
    sec.files.append(write_csv(out_dir / "throughput.csv", rows))
    sec.lines += ["Seconds are summed over finished shards; GPU-hours = seconds × GPUs of a task (from the done "
                  "marker, else estimated from the stage's cluster and model config). Shared directories appear "
                  "once.", ""]
    sec.lines += md_table(["stage", "directory", "shards done", "records in", "records out", "seconds", "records/s",
                           "tokens/s", "GPUs/task", "GPU-hours"],
                          ([r["stage"], r["dir"], f"{r['done']}/{r['shards']}", r.get("records_in", "-"),
                            r.get("records_out", "-"), r.get("seconds", "-"), _cell(r.get("records_per_s")),
                            _cell(r.get("tokens_per_s")), _cell(r.get("gpus_per_task")), r.get("gpu_hours", "-")]
                           for r in rows))
    sec.lines += ["", f"Total GPU-hours: {sum(r.get('gpu_hours', 0.0) for r in rows):.3f}", ""]
    if cfg.plots:
        sec.files.append(plot_throughput(rows, out_dir / "throughput.png", cfg))
        sec.lines += ["![Time per stage](throughput.png)", ""]
    return sec


def plot_throughput(rows: Sequence[dict[str, Any]], path: Path, cfg: ReportConfig) -> str:
    plt = _plt()
    done = [r for r in rows if r.get("seconds")]
    labels = [f"{r['stage']} ({r['dir'].rsplit('-', 1)[-1][:6]})" for r in done]
    fig, ax = plt.subplots(figsize=(8, max(2.5, 0.35 * len(done) + 1)))
    ax.barh(range(len(done)), [r["seconds"] for r in done], color="tab:blue", label="wall seconds (sum over shards)")
    ax.set_yticks(range(len(done)))
    ax.set_yticklabels(labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("seconds")
    ax.set_ylabel("stage (directory hash)")
    ax.set_title("Time per stage")
    for i, r in enumerate(done):
        if r.get("gpu_hours"):
            ax.annotate(f"{r['gpu_hours']:.2f} GPU-h", (r["seconds"], i), fontsize=7, xytext=(3, -3),
                        textcoords="offset points")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=cfg.dpi)
    plt.close(fig)
    return path.name


# --------------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------------


def build_report(runs: Sequence[RunInfo], out_dir: Path, cfg: ReportConfig, *, source: str = "") -> Path:
    """Write report.md, the CSV files and the plots into `out_dir`; return the path of report.md."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rates = winrate_rows(runs, cfg)
    sections = [runs_section(runs), winrate_section(rates, out_dir, cfg), alpaca_section(runs, out_dir, cfg),
                math_section(runs, out_dir), sweep_section(runs, rates, out_dir, cfg), pairs_section(runs, out_dir),
                dpo_section(runs, out_dir, cfg), throughput_section(runs, out_dir, cfg)]
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"# {cfg.title}", "", f"Generated {now} from {len(runs)} run(s){f' of {source}' if source else ''}.", ""]
    for sec in sections:
        lines += sec.lines
    files = [f for sec in sections for f in sec.files]
    lines += ["## Files", "", *[f"- [{f}]({f})" for f in files], ""]
    path = out_dir / "report.md"
    tmp = out_dir / ".report.md.tmp"
    tmp.write_text("\n".join(lines), encoding="utf-8")
    tmp.replace(path)
    log.info("event=report_written path=%s runs=%d files=%d", path, len(runs), len(files))
    return path
