"""Micro-batch plans and model inputs: packed rows (no padding) or right-padded batches.

A step's pairs are first spread over the ranks (longest first, to the rank with the fewest tokens),
then packed on each rank into micro-batches of at most ``max_tokens`` tokens (first-fit
decreasing). The chosen and rejected sequences of a pair always share a micro-batch, since the loss
couples them. Every rank runs the same number of micro-batches (ZeRO's collectives need it): a rank
with fewer splits its fullest micro-batches, and only a rank with fewer pairs than micro-batches
runs an empty one (a 2-token dummy with zero loss weight). The plan depends only on the step's
token counts, so every rank computes the same plan without communicating.

In a packed micro-batch all sequences sit in one row, with position ids restarting at 0 for each
sequence and ``cu_seqlens`` marking the boundaries (see :mod:`rlhi_hpc.train.attention`).
Sequence ``2i`` is the chosen and ``2i + 1`` the rejected response of the micro-batch's pair ``i``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rlhi_hpc.train.data import TokenizedPair

Plan = list[list[list[int]]]  # [rank][micro-batch] -> indices into the step's pairs


def assign_to_ranks(token_counts: Sequence[int], world_size: int) -> list[list[int]]:
    """Greedy balance: longest pair first, to the rank with the fewest tokens so far."""
    loads = [0] * world_size
    ranks: list[list[int]] = [[] for _ in range(world_size)]
    for i in sorted(range(len(token_counts)), key=lambda j: (-token_counts[j], j)):
        r = min(range(world_size), key=lambda k: (loads[k], k))
        ranks[r].append(i)
        loads[r] += token_counts[i]
    return ranks


def pack_bins(items: Sequence[int], token_counts: Sequence[int], max_tokens: int) -> list[list[int]]:
    """First-fit decreasing into bins of at most `max_tokens` tokens (a larger item gets its own bin)."""
    bins: list[list[int]] = []
    loads: list[int] = []
    for i in sorted(items, key=lambda j: (-token_counts[j], j)):
        for b, load in enumerate(loads):
            if load + token_counts[i] <= max_tokens:
                bins[b].append(i)
                loads[b] += token_counts[i]
                break
        else:
            bins.append([i])
            loads.append(token_counts[i])
    return bins


def _split_fullest(bins: list[list[int]], token_counts: Sequence[int]) -> bool:
    splittable = [b for b in range(len(bins)) if len(bins[b]) > 1]
    if not splittable:
        return False
    b = max(splittable, key=lambda k: (sum(token_counts[i] for i in bins[k]), -k))
    items = sorted(bins[b], key=lambda j: (-token_counts[j], j))
    halves: list[list[int]] = [[], []]
    loads = [0, 0]
    for i in items:
        h = 0 if loads[0] <= loads[1] else 1
        halves[h].append(i)
        loads[h] += token_counts[i]
    bins[b:b + 1] = halves
    return True


def plan_step(token_counts: Sequence[int], world_size: int, max_tokens: int) -> Plan:
    """Per rank, the same number of micro-batches of pair indices (an empty one = dummy)."""
    per_rank = [pack_bins(items, token_counts, max_tokens) for items in assign_to_ranks(token_counts, world_size)]
    n_micro = max(1, max(len(b) for b in per_rank))
    for bins in per_rank:
        while len(bins) < n_micro:
            if not _split_fullest(bins, token_counts):
                bins.append([])
    return per_rank


@dataclass
class MicroBatch:
    """Tensors of one micro-batch plus its bookkeeping (see the module docstring)."""

    input_ids: Any  # [rows, T] long
    position_ids: Any  # [rows, T] long
    cu_seqlens: Any | None  # [n_seqs + 1] int32 (packed only)
    max_seqlen: int
    pred_pos: Any  # [N] flat index into rows*T of the hidden state that predicts each response token
    targets: Any  # [N] the response tokens
    seq_index: Any  # [N] the sequence each response token belongs to
    response_lens: Any  # [n_seqs] long
    seq_lens: list[int]  # tokens of each sequence
    n_seqs: int
    n_pairs: int
    real_tokens: int
    slots: int  # rows * T (real + padding)
    keys: list[str]

    def model_kwargs(self, device: Any) -> dict[str, Any]:
        """Keyword arguments of :class:`rlhi_hpc.train.logps.SequenceLogps` on `device`."""
        kw = {"input_ids": self.input_ids.to(device), "position_ids": self.position_ids.to(device),
              "pred_pos": self.pred_pos.to(device), "targets": self.targets.to(device),
              "seq_index": self.seq_index.to(device), "n_seqs": self.n_seqs}
        if self.cu_seqlens is not None:
            kw["cu_seqlens"] = self.cu_seqlens.to(device)
            kw["max_seqlen"] = self.max_seqlen
        return kw


def _sequences(pairs: Sequence[TokenizedPair]) -> list[tuple[tuple[int, ...], int]]:
    seqs = []
    for p in pairs:
        seqs.append((p.prompt_ids + p.chosen_ids, len(p.prompt_ids)))
        seqs.append((p.prompt_ids + p.rejected_ids, len(p.prompt_ids)))
    return seqs


def build_microbatch(pairs: Sequence[TokenizedPair], *, packed: bool, pad_id: int) -> MicroBatch:
    """Model inputs for `pairs` (non-empty): one packed row, or one right-padded row per sequence."""
    import torch

    if not pairs:
        raise ValueError("build_microbatch needs at least one pair; use dummy_pair() for an empty micro-batch")
    seqs = _sequences(pairs)
    lens = [len(ids) for ids, _ in seqs]
    width = max(lens)
    rows, T = (1, sum(lens)) if packed else (len(seqs), width)
    input_ids = torch.full((rows, T), pad_id, dtype=torch.long)
    position_ids = torch.zeros((rows, T), dtype=torch.long)
    pred, tgt, sidx = [], [], []
    offset = 0
    for s, (ids, plen) in enumerate(seqs):
        row, start = (0, offset) if packed else (s, 0)
        input_ids[row, start:start + len(ids)] = torch.tensor(ids, dtype=torch.long)
        position_ids[row, start:start + len(ids)] = torch.arange(len(ids))
        base = row * T + start
        pred.extend(range(base + plen - 1, base + len(ids) - 1))
        tgt.extend(ids[plen:])
        sidx.extend([s] * (len(ids) - plen))
        offset += len(ids)
    if not packed:
        position_ids[:, :] = torch.arange(T)
    cu = torch.tensor([0] + list(_cumsum(lens)), dtype=torch.int32) if packed else None
    return MicroBatch(
        input_ids=input_ids, position_ids=position_ids, cu_seqlens=cu, max_seqlen=width,
        pred_pos=torch.tensor(pred, dtype=torch.long), targets=torch.tensor(tgt, dtype=torch.long),
        seq_index=torch.tensor(sidx, dtype=torch.long),
        response_lens=torch.tensor([len(ids) - plen for ids, plen in seqs], dtype=torch.long),
        seq_lens=lens, n_seqs=len(seqs), n_pairs=len(pairs), real_tokens=sum(lens), slots=rows * T,
        keys=[p.key for p in pairs],
    )


def _cumsum(values: Sequence[int]) -> list[int]:
    out, total = [], 0
    for v in values:
        total += v
        out.append(total)
    return out


def dummy_pair(pad_id: int) -> TokenizedPair:
    """A 2-token pair used for an empty micro-batch (its loss weight is zero)."""
    return TokenizedPair(key="<dummy>", source="", prompt_ids=(pad_id,), chosen_ids=(pad_id,),
                         rejected_ids=(pad_id,))
