"""Write the bundled math benchmark samples, one per file format the eval stage reads.

    python -m rlhi_hpc.tools.make_math_bench [out=rlhi_hpc/data/sample] [seed=11]

* ``math_minerva_sample.jsonl`` — Minerva/MATH style: ``problem``, ``solution`` ending in
  ``\\boxed{...}`` (the gold answer is read from it), ``level``, ``type``;
* ``math_olympiad_sample.jsonl`` — OlympiadBench style: ``id``, ``question``, ``final_answer`` (a list),
  ``answer_type``, ``subfield``;
* ``math_mc_sample.jsonl`` — multiple choice, GPQA / MMLU-Pro style: ``question_id``, ``question``,
  ``options``, ``answer`` (a letter), ``answer_index``, ``category``.

All problems are template-generated (the same seed always gives the same bytes); there is no
copied benchmark row. ``eval.math_files`` in jobs/reasoning_demo.yaml points at these files.
"""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "data" / "sample"
DEFAULT_SEED = 11
N_PER_FILE = 8
FILES = {"minerva": "math_minerva_sample.jsonl", "olympiad": "math_olympiad_sample.jsonl",
         "mc": "math_mc_sample.jsonl"}


def _tex(q: Fraction) -> str:
    return str(q.numerator) if q.denominator == 1 else f"\\frac{{{q.numerator}}}{{{q.denominator}}}"


def minerva_rows(rng: random.Random) -> list[dict[str, Any]]:
    rows = []
    for i in range(N_PER_FILE):
        a, b, c = rng.randint(2, 9), rng.randint(1, 30), rng.randint(31, 90)
        x = Fraction(c - b, a)
        rows.append({"problem": f"If ${a}x + {b} = {c}$, what is $x$? Express your answer as a common fraction "
                                "if needed.",
                     "solution": f"Subtracting {b} gives ${a}x = {c - b}$, so $x = \\boxed{{{_tex(x)}}}$.",
                     "level": f"Level {1 + i % 5}", "type": "Algebra"})
    return rows


def olympiad_rows(rng: random.Random) -> list[dict[str, Any]]:
    rows = []
    for i in range(N_PER_FILE):
        n = rng.randint(3, 9)
        if i % 2:
            rows.append({"id": 1000 + i, "question": f"How many diagonals does a convex polygon with {n + 3} sides "
                                                     "have?",
                         "final_answer": [f"${(n + 3) * n // 2}$"], "answer_type": "Numerical",
                         "subfield": "Combinatorics"})
        else:
            rows.append({"id": 1000 + i, "question": f"Find the sum of the interior angles, in degrees, of a convex "
                                                     f"polygon with {n} sides.",
                         "final_answer": [f"${180 * (n - 2)}$"], "answer_type": "Numerical", "subfield": "Geometry"})
    return rows


def mc_rows(rng: random.Random) -> list[dict[str, Any]]:
    rows = []
    for i in range(N_PER_FILE):
        a, b = rng.randint(11, 49), rng.randint(11, 49)
        right = a * b
        options = sorted({right, right + 10, right - 10, right + a, right + 1}, key=lambda v: rng.random())
        options = [str(v) for v in options][:4] if str(right) in [str(v) for v in options][:4] else \
            [str(right)] + [str(v) for v in options if v != right][:3]
        idx = options.index(str(right))
        rows.append({"question_id": i, "question": f"What is ${a} \\times {b}$?", "options": options,
                     "answer": "ABCD"[idx], "answer_index": idx, "category": "math"})
    return rows


def write_benchmarks(out: Path = DEFAULT_OUT, seed: int = DEFAULT_SEED) -> dict[str, Path]:
    """Write the three files; return benchmark name -> path."""
    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for name, rows in (("minerva", minerva_rows(rng)), ("olympiad", olympiad_rows(rng)), ("mc", mc_rows(rng))):
        paths[name] = out / FILES[name]
        paths[name].write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows), encoding="utf-8")
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    args = dict(a.split("=", 1) for a in (sys.argv[1:] if argv is None else argv))
    paths = write_benchmarks(Path(args.get("out", DEFAULT_OUT)), int(args.get("seed", DEFAULT_SEED)))
    for name, path in paths.items():
        print(f"wrote {path}: benchmark={name} rows={N_PER_FILE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
