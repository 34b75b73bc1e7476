"""Input data: WildChat-format rows, their validation and filters, and the stable user split."""

from rlhi_hpc.data.wildchat import (
    FILTER_REASONS,
    QUARANTINE_REASONS,
    RawRow,
    filter_reason,
    input_files,
    is_eval_user,
    iter_file_rows,
    iter_hub_rows,
    iter_input_rows,
    iter_raw_rows,
    parse_row,
    parse_timestamp,
    raw_user,
    sample_path,
    stable_bucket,
    user_turn_count,
)

__all__ = [
    "FILTER_REASONS",
    "QUARANTINE_REASONS",
    "RawRow",
    "filter_reason",
    "input_files",
    "is_eval_user",
    "iter_file_rows",
    "iter_hub_rows",
    "iter_input_rows",
    "iter_raw_rows",
    "parse_row",
    "parse_timestamp",
    "raw_user",
    "sample_path",
    "stable_bucket",
    "user_turn_count",
]
