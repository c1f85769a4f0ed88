"""Where a launch's wall time goes: start-up, data, training steps,
evaluation, the training type's intervention (DASH's direction pass and
shrink), checkpoint saves, compiles and the report.

    python -m bench.profile_default --config configs/default.py --out prof.md
    python -m bench.profile_default --config configs/mnist1d.py \
        --override train_type=dash --override seeds=0

Runs `dash_jax.run` in this process with timers around the stages: each
timer blocks on its stage's result (jax.block_until_ready), so dispatched
work is charged to the stage that queued it. Compile time is XLA's own count
(it happens inside the first call of each stage, so it is also inside their
rows). Start-up is this process's time before the launch: imports and JAX's
backend. Runs in a fresh temporary workdir, the compile cache off unless
--compile-cache.
"""
from __future__ import annotations

import time

_T0 = time.perf_counter()

import argparse  # noqa: E402
import collections  # noqa: E402
import dataclasses  # noqa: E402
import functools  # noqa: E402
import importlib.util  # noqa: E402
import os  # noqa: E402
import tempfile  # noqa: E402

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')


class Timers:
  """Seconds and calls per stage."""

  def __init__(self):
    self.seconds = collections.defaultdict(float)
    self.calls = collections.Counter()

  def wrap(self, fn, label, block=True):
    import jax

    @functools.wraps(fn)
    def timed(*args, **kwargs):
      start = time.perf_counter()
      out = fn(*args, **kwargs)
      if block:
        jax.block_until_ready(out)
      self.seconds[label] += time.perf_counter() - start
      self.calls[label] += 1
      return out
    return timed


def _load_config(path, overrides):
  spec = importlib.util.spec_from_file_location('profiled_config', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  for item in overrides:
    field, value = item.split('=', 1)
    config[field] = type(config[field])(value) if not isinstance(config[field], bool) else (
        value.lower() in ('1', 'true', 'yes'))
  return config


def instrument(timers: Timers) -> None:
  """Timers around the stages every launch goes through."""
  from dash_jax import checkpoint, data, train, training_types
  from dash_jax.launch import report, tables
  train.train_until_converged = timers.wrap(train.train_until_converged, 'training steps')
  train.evaluate = timers.wrap(train.evaluate, 'evaluation (test set)')
  data.load = timers.wrap(data.load, 'data load', block=False)
  checkpoint.RunCheckpoints.save = timers.wrap(checkpoint.RunCheckpoints.save,
                                               'checkpoint saves', block=False)
  for name, tt in list(training_types.TRAINING_TYPES.items()):
    label = ('DASH direction + shrink' if name == 'dash'
             else f'{name} intervention')
    training_types.TRAINING_TYPES[name] = dataclasses.replace(
        tt, before=tt.before and timers.wrap(tt.before, label),
        after=tt.after and timers.wrap(tt.after, label))
  for module in (tables, report):
    for attr in ('write', 'write_report'):
      if hasattr(module, attr):
        setattr(module, attr, timers.wrap(getattr(module, attr), 'summary and report',
                                          block=False))


def profile(config, workdir) -> tuple[list[tuple[str, float, int]], float, float]:
  """[(stage, seconds, calls)], the launch's wall time and start-up time."""
  import dash_jax
  from dash_jax import compiles
  timers = Timers()
  instrument(timers)
  import jax
  jax.devices()  # the backend starts here, as in any launch
  startup = time.perf_counter() - _T0
  counter = compiles.CompileCounter()
  start = time.perf_counter()
  dash_jax.run(config, workdir)
  wall = time.perf_counter() - start
  compiled = counter.since_last()
  rows = [(k, v, timers.calls[k]) for k, v in sorted(timers.seconds.items(),
                                                       key=lambda kv: -kv[1])]
  rows.append(('XLA compiles (inside the rows above)', compiled.seconds, compiled.count))
  accounted = sum(v for k, v, _ in rows if not k.startswith('XLA'))
  rows.append(('rest (loop, logging, TensorBoard, results.json)', wall - accounted, 0))
  return rows, wall, startup


def markdown(rows, wall, startup, command) -> str:
  total = wall + startup
  lines = [f'Command: `{command}`', '',
           '| stage | seconds | share of the process | calls |', '|---|---|---|---|',
           f'| start-up (imports, JAX backend) | {startup:.2f} | {100 * startup / total:.0f}% | 1 |']
  lines += [f'| {k} | {v:.2f} | {100 * v / total:.0f}% | {n or ""} |' for k, v, n in rows]
  lines.append(f'| **whole process** | {total:.2f} | 100% | |')
  return '\n'.join(lines) + '\n'


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--config', default='configs/default.py')
  p.add_argument('--override', action='append', default=[], metavar='FIELD=VALUE')
  p.add_argument('--compile-cache', action='store_true', help='keep the config\'s cache')
  p.add_argument('--out', default='')
  args = p.parse_args(argv)
  config = _load_config(args.config, args.override)
  config.progress = False
  if not args.compile_cache:
    config.compile_cache_dir = ''
  with tempfile.TemporaryDirectory() as workdir:
    rows, wall, startup = profile(config, workdir)
  command = ' '.join(['python -m bench.profile_default', '--config', args.config]
                     + [f'--override {o}' for o in args.override])
  text = markdown(rows, wall, startup, command)
  print(text)
  if args.out:
    with open(args.out, 'w') as f:
      f.write(text)


if __name__ == '__main__':
  main()
