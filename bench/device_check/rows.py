"""One row of the device check's table and its markdown."""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass
class Row:
  name: str
  ms: float | None = None
  images_s: float | None = None
  tflops: float | None = None
  share: float | None = None
  notes: str = ''
  gflop: float | None = None  # per step (XLA count); shown in notes

  def markdown(self) -> str:
    def f(v, fmt):
      return 'n/a' if v is None else format(v, fmt)
    return (f'| {self.name} | {f(self.ms, ".2f")} | {f(self.images_s, ",.0f")} | '
            f'{f(self.tflops, ".1f")} | '
            f'{"n/a" if self.share is None else f"{self.share:.1f}%"} | {self.notes} |')


def fastest(by_mode: dict):
  """The fastest measured epoch mode's row, or None."""
  timed = [r for r in by_mode.values() if r and r.ms]
  return min(timed, key=lambda r: r.ms) if timed else None
