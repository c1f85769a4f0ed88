"""Differences paired by seed against one training type (DASH by default).

Runs of one seed share the chunks and the initialisation, so much of the seed
noise cancels in a difference taken seed by seed: a table of means hides it.
report.md prints these tables under each dataset's table; the README's
comparisons are made the same way.
"""
from __future__ import annotations

import dataclasses

import numpy as np

REFERENCE = 'dash'


@dataclasses.dataclass(frozen=True)
class Paired:
  """reference - other on the seeds both finished, in the field's units (x scale)."""
  other: object  # the tables.Row compared with the reference
  seeds: tuple  # common seeds, ascending
  differences: np.ndarray  # (len(seeds),): reference - other, seed by seed

  @property
  def ahead(self) -> int:
    """Seeds on which the reference is strictly above the other."""
    return int((self.differences > 0).sum())


def differences(reference, other, field='test_acc_last', scale=100.0) -> Paired:
  """reference and other: tables.Rows; their common seeds, paired."""
  ref = dict(zip(reference.seeds, reference.per_seed[field]))
  oth = dict(zip(other.seeds, other.per_seed[field]))
  seeds = tuple(sorted(set(ref) & set(oth)))
  diff = scale * np.array([ref[s] - oth[s] for s in seeds], np.float64)
  return Paired(other, seeds, diff)


def against(block, reference=REFERENCE) -> list[Paired]:
  """Every other row of one block (one dataset and optimizer) paired with its
  single `reference` row of no sweep; [] when there is none or fewer than
  two common seeds (nothing to pair)."""
  refs = [r for r in block if r.train_type == reference and not r.swept]
  if len(refs) != 1:
    return []
  pairs = [differences(refs[0], r) for r in block if r is not refs[0]]
  return [p for p in pairs if len(p.seeds) >= 2]


def markdown(pairs, label, reference_label='DASH') -> list[str]:
  """Lines of one table: a row per compared training type. label(row) -> its
  name; optimizer: the block's, shown in its own column."""
  if not pairs:
    return []
  lines = [f'{reference_label} minus each type, paired by seed (test acc. last, points): '
           f'mean (std) of the differences, and the seeds on which {reference_label} '
           'is ahead.', '',
           '| difference | optimizer | seeds | mean (std) | ahead |',
           '|---|---|---:|---:|---:|']
  for p in pairs:
    lines.append(f'| {reference_label} - {label(p.other)} | {p.other.optimizer.upper()} | '
                 f'{len(p.seeds)} | {p.differences.mean():+.2f} ({p.differences.std():.2f}) | '
                 f'{p.ahead} of {len(p.seeds)} |')
  return lines + ['']
