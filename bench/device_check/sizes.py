"""What the device check measures at: the GPU run's sizes, CI's smoke sizes,
and the table's row names in order."""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Sizes:
  model: str
  width: int
  image: tuple
  batch: int
  steps: int  # timed steps per epoch
  repeats: int
  seeds: tuple
  processes: int
  dir_chunks: int
  dir_chunk: int
  eval_n: int
  eval_batch: int
  protocol: dict
  dtypes: tuple = ('float32', 'bfloat16')  # of the step rows measured; the others noted


FULL = Sizes('resnet18', 0, (32, 32, 3), 128, 30, 3, (1, 2, 4, 8), 2, 10, 1000,
             10_000, 256,
             {'model': 'resnet18', 'num_train': 5000, 'num_chunks': 10, 'max_epoch': 2})
# CI's check that every row comes out: the bfloat16 steps (the same code as
# float32's) and a second process add compiles and minutes, and nothing the
# rows' code does not already run; tests/test_precision.py covers bfloat16.
SMOKE = Sizes('mlp', 16, (32, 32, 3), 8, 2, 1, (1, 2), 1, 2, 8, 64, 32,
              {'model': 'mlp', 'width': 16, 'num_train': 64, 'num_chunks': 2,
               'max_epoch': 1}, dtypes=('float32',))
NOT_IN_SMOKE = 'not measured in --smoke (the GPU run measures it)'


def by_name(name: str) -> Sizes:
  """'smoke' or 'full' (the worker processes' argument)."""
  return SMOKE if name == 'smoke' else FULL


# Epoch modes timed: a jitted step a batch from Python; a compiled epoch with
# one host round trip a step ('scan', block 1); and with a fixed-length block
# of steps a round trip ('scan-block', setup.scan_block: 1 on CPU).
MODES = ('loop', 'scan', 'scan-block')


def step_rows(opt: str, dtype: str) -> list[str]:
  """The step rows of one optimizer and dtype, one a mode."""
  return [f'ResNet-18 {opt} step, {dtype}, {mode}' for mode in MODES]


STEP_ROWS = [name for opt in ('SGD', 'SAM') for dtype in ('float32', 'bfloat16')
             for name in step_rows(opt, dtype)]
TORCH_ROWS = ['PyTorch eager SGD step, float32', 'PyTorch eager SAM step, float32']
PROTOCOL_ROWS = ['protocol cold-sgd', 'protocol dash-sgd']
PROJECTION_ROWS = {'dash': 'projection: paper CIFAR-10 DASH-SGD',
                   'cold': 'projection: paper CIFAR-10 cold-SGD'}


def seeds_row(num_seeds: int) -> str:
  return f'vmapped seeds S={num_seeds}, SGD float32'


def processes_row(sizes: Sizes) -> str:
  return f'separate processes P={sizes.processes}, SGD float32'


def row_names(sizes: Sizes) -> list[str]:
  """Every row, in table order; tests/test_device_check.py checks each is there."""
  return (['tests'] + STEP_ROWS + [seeds_row(s) for s in sizes.seeds]
          + [processes_row(sizes), 'DASH direction pass', 'evaluation']
          + TORCH_ROWS + PROTOCOL_ROWS + list(PROJECTION_ROWS.values()))
