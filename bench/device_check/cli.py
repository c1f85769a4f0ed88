"""The command line: arguments, then the table's sections in order inside the
budget, then the markdown written to OUT/device_check.md."""
from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time

from bench import device_check
from bench.device_check import processes, protocol, sizes as sizes_mod, tests_row
from bench.device_check.budget import Budget, section
from bench.device_check.projection import projection
from bench.device_check.render import render
from bench.device_check.rows import Row, fastest
from bench.device_check.timing import time_direction_and_eval, time_seeds, time_steps
from bench.device_check.torch_rows import has_torch, time_torch

ROOT = processes.ROOT


def parse_args(argv):
  parser = argparse.ArgumentParser(prog='python -m bench.device_check',
                                   description=device_check.__doc__.split('\n\n')[0])
  parser.add_argument('--smoke', action='store_true',
                      help='toy sizes (MLP), CPU, well under a minute on an idle machine')
  parser.add_argument('--out', default=os.environ.get('OUT', ''),
                      help='folder for device_check.md (default $OUT, else bench/)')
  parser.add_argument('--budget-s', type=float, default=0,
                      help='wall-clock budget (default 420; smoke 900: CI runs every row)')
  parser.add_argument('--tests', default='', help='comma-separated test files '
                      '(default: the GPU-relevant ones; "none" skips)')
  parser.add_argument('--worker', default='', help=argparse.SUPPRESS)
  return parser.parse_args(argv)


def test_files(args) -> list[str]:
  if args.tests == 'none':
    return []
  given = [f for f in args.tests.split(',') if f]
  return given or list(tests_row.SMOKE_TESTS if args.smoke else tests_row.GPU_TESTS)


def measure_steps(rows, sizes, budget) -> dict:
  """The step rows; returns {(opt, dtype): {mode: Row}} of those measured."""
  step = {}
  for opt in ('SGD', 'SAM'):
    for dtype in ('float32', 'bfloat16'):
      keys = sizes_mod.step_rows(opt, dtype)
      if dtype not in sizes.dtypes:
        rows.update((k, Row(k, notes=sizes_mod.NOT_IN_SMOKE)) for k in keys)
        continue

      def measure(opt=opt, dtype=dtype):
        got = time_steps(sizes, opt, dtype)
        step[(opt, dtype)] = got
        return [got[m] for m in sizes_mod.MODES]
      section(rows, keys, budget, 45, measure)
  return step


def measure_seeds(rows, sizes, budget, sgd):
  """The vmapped-seeds rows, each compared with the first S's images/s."""
  flops = sgd['loop'].gflop * 1e9 if sgd and sgd['loop'].gflop else None
  for s in sizes.seeds:
    section(rows, sizes_mod.seeds_row(s), budget, 40, lambda s=s: time_seeds(sizes, s, flops))
  base = rows.get(sizes_mod.seeds_row(sizes.seeds[0]))
  for s in sizes.seeds[1:]:
    r = rows[sizes_mod.seeds_row(s)]
    if base and base.images_s and r.images_s:
      r.notes += f'; {r.images_s / base.images_s:.2f}x the images/s of S={sizes.seeds[0]}'


def measure_torch(rows, sizes, budget, step, smoke):
  """The PyTorch rows, each with the fastest JAX mode's ratio to it."""
  if not has_torch():
    rows.update((r, Row(r, notes='skipped: torch not installed')) for r in sizes_mod.TORCH_ROWS)
    return
  section(rows, sizes_mod.TORCH_ROWS, budget, 30, lambda: time_torch(sizes, smoke))
  for r, opt in zip(sizes_mod.TORCH_ROWS, ('SGD', 'SAM')):
    ours = fastest(step.get((opt, 'float32'), {}))
    if ours and rows[r].ms:
      rows[r].notes += f'; jax fastest mode / torch = {ours.ms / rows[r].ms:.2f}'


def measure_protocol(rows, sizes, budget):
  with tempfile.TemporaryDirectory() as workdir:
    section(rows, sizes_mod.PROTOCOL_ROWS, budget, 90,
            lambda: list(protocol.run_short_protocol(sizes, workdir).values()))
  for r in sizes_mod.PROTOCOL_ROWS:
    rows[r].notes = protocol.sizes_note(sizes) + rows[r].notes


def add_projections(rows, sgd):
  """The paper's runs at the fastest SGD mode, direction pass and evaluation."""
  scan = fastest(sgd)
  dir_row, eval_row = rows.get('DASH direction pass'), rows.get('evaluation')
  for kind, name in sizes_mod.PROJECTION_ROWS.items():
    if scan and dir_row and dir_row.images_s and eval_row and eval_row.images_s:
      rows[name] = dataclasses.replace(
          projection(kind, scan.ms, 1e3 / dir_row.images_s, 1e3 / eval_row.images_s),
          name=name)
    else:
      rows[name] = Row(name, notes='n/a: a measurement it needs is missing')


def main(argv=None):
  args = parse_args(argv)
  if args.worker:
    return processes.worker(args.worker)
  sizes = sizes_mod.SMOKE if args.smoke else sizes_mod.FULL
  out_dir = args.out or os.path.join(ROOT, 'bench')
  os.makedirs(out_dir, exist_ok=True)
  files = test_files(args)
  budget = Budget(args.budget_s or (900 if args.smoke else 420),
                  reserve_s=(30 if args.smoke else 120) if files else 0)
  start = time.perf_counter()
  rows: dict[str, Row] = {}
  step = measure_steps(rows, sizes, budget)
  measure_seeds(rows, sizes, budget, step.get(('SGD', 'float32'), {}))
  section(rows, ['DASH direction pass', 'evaluation'], budget, 30,
          lambda: time_direction_and_eval(sizes))
  measure_torch(rows, sizes, budget, step, args.smoke)
  measure_protocol(rows, sizes, budget)
  section(rows, sizes_mod.processes_row(sizes), budget, 60,
          lambda: processes.time_processes(sizes, args.smoke))
  if files:  # last: the measurements are what only this machine can give
    budget.reserve_s = 0
    section(rows, 'tests', budget, 20,
            lambda: tests_row.run_tests(files, out_dir, max(budget.left(), 20)))
  else:
    rows['tests'] = Row('tests', notes='skipped: --tests none')
  add_projections(rows, step.get(('SGD', 'float32'), {}))
  text = render(rows, sizes_mod.row_names(sizes), args.smoke, sizes,
                time.perf_counter() - start)
  path = os.path.join(out_dir, 'device_check.md')
  with open(path, 'w') as f:
    f.write(text)
  print(text)
  print(f'written to {path}')
  return rows
