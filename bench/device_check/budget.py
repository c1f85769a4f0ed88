"""The wall-clock budget, and running one section of the table inside it so
that a section that fails or would start too late never loses the rest."""
from __future__ import annotations

import dataclasses
import sys
import time

from bench.device_check.rows import Row


class Budget:
  """Wall-clock budget: sections that would start past it are skipped."""

  def __init__(self, seconds, reserve_s=0.0):
    self.end = time.perf_counter() + seconds
    self.reserve_s = reserve_s  # kept for the tests, which run last

  def left(self):
    return self.end - time.perf_counter() - self.reserve_s


def section(rows, names, budget, need_s, fn):
  """Fill rows[names] from fn() (a Row or list of Rows), or mark them
  skipped/failed; never raises, so the table always comes out."""
  names = [names] if isinstance(names, str) else names
  if budget.left() < need_s:
    for n in names:
      rows[n] = Row(n, notes=f'skipped: {budget.left():.0f} s of the budget left')
    return
  start = time.perf_counter()
  try:
    got = fn()
  except Exception as e:  # noqa: BLE001 - one failed section must not lose the rest
    msg = ' '.join(f'{type(e).__name__}: {e}'.split())[:300]
    for n in names:
      rows[n] = Row(n, notes=f'failed: {msg}')
    print(f'[device_check] {names[0]}: failed after {time.perf_counter() - start:.0f} s: '
          f'{msg}', file=sys.stderr)
    return
  finally:
    print(f'[device_check] {names[0]}{" ..." if len(names) > 1 else ""}: '
          f'{time.perf_counter() - start:.1f} s', file=sys.stderr)
  got = got if isinstance(got, (list, tuple)) else [got]
  for n, row in zip(names, got):
    rows[n] = dataclasses.replace(row, name=n)
