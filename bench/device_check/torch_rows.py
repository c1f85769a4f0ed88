"""The PyTorch eager step on the same device (bench/torch_ref.py, float32, as
the original code), the reference the JAX rows are compared with."""
from __future__ import annotations

import statistics
import time

import numpy as np

from bench.device_check.rows import Row


def has_torch() -> bool:
  try:
    import torch  # noqa: F401
  except ImportError:
    return False
  return True


def time_torch(sizes, smoke):
  """[SGD row, SAM row]: ms per eager step, one host sync a step."""
  import torch

  from bench import torch_ref
  device = 'cuda' if torch.cuda.is_available() else 'cpu'
  if smoke:
    model = torch_ref.MLP(int(np.prod(sizes.image)), sizes.width, 10).to(device)
  else:
    model = torch_ref.ResNet18(10).to(device)
  opt = torch_ref.sgd(model)
  x = torch.randn(sizes.batch, sizes.image[2], *sizes.image[:2], device=device)
  y = torch.randint(0, 10, (sizes.batch,), device=device)
  rows = []
  for step in (torch_ref.train_step, torch_ref.sam_step):
    step(model, opt, x, y)  # warm-up (cuDNN autotuning)
    times = []
    for _ in range(sizes.repeats):
      start = time.perf_counter()
      for _ in range(sizes.steps):
        step(model, opt, x, y)  # .item() inside: one host sync a step
      if device == 'cuda':
        torch.cuda.synchronize()
      times.append((time.perf_counter() - start) / sizes.steps)
    sec = statistics.median(times)
    rows.append(Row('', sec * 1e3, sizes.batch / sec,
                    notes=f'torch {torch.__version__} on {device}'))
  return rows
