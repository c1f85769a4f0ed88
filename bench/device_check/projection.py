"""The paper's 50-experiment CIFAR-10 runs projected at the measured speeds."""
from __future__ import annotations

from bench.constants import PAPER_CHUNK, PAPER_EXPERIMENTS, PAPER_MEAN_STEPS, PAPER_TEST
from bench.device_check.rows import Row


def projection(kind, step_ms, dir_ms_per_image, eval_ms_per_image):
  """The paper's 50-experiment CIFAR-10 run of `kind` ('dash' or 'cold')."""
  steps = PAPER_EXPERIMENTS * PAPER_MEAN_STEPS[kind]
  step_h = steps * step_ms / 3.6e6
  eval_h = PAPER_EXPERIMENTS * PAPER_TEST * eval_ms_per_image / 3.6e6
  dir_images = sum(range(2, PAPER_EXPERIMENTS + 1)) * PAPER_CHUNK if kind == 'dash' else 0
  dir_h = dir_images * dir_ms_per_image / 3.6e6
  total = step_h + eval_h + dir_h
  return Row('', notes=f'{total:.2f} h: {steps:,} steps {step_h:.2f} h'
             + (f' + direction passes ({dir_images:,} images) {dir_h:.2f} h'
                if kind == 'dash' else '')
             + f' + evaluation {eval_h:.2f} h; one seed, SGD float32 scan')
