"""The markdown the device check writes: machine, versions, command, sizes,
then one table row per check in row_names order."""
from __future__ import annotations

import contextlib
import datetime
import platform

import jax

from bench.constants import PEAK_TFLOPS
from bench.device_check.rows import Row


def versions():
  out = {'python': platform.python_version(), 'jax': jax.__version__}
  for mod in ('jaxlib', 'flax', 'optax', 'torch'):
    with contextlib.suppress(Exception):
      out[mod] = __import__(mod).__version__
  return out


def render(rows, names, smoke, sizes, wall_s):
  device = jax.devices()[0]
  kind = getattr(device, 'device_kind', device.platform)
  v = versions()
  peak = PEAK_TFLOPS.get(kind)
  cmd = 'bash bench/device_check.sh' + (' --smoke' if smoke else '')
  lines = [
      f'### GPU device check: {kind} ({jax.default_backend()}, {jax.device_count()} device(s))',
      '',
      f'`{cmd}`, {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M UTC}, '
      f'{wall_s:.0f} s; ' + ', '.join(f'{k} {val}' for k, val in v.items())
      + f'; {platform.machine()}.',
      '',
      f'Steps: {sizes.model}, batch {sizes.batch} of {"x".join(map(str, sizes.image))}, '
      f'median of {sizes.repeats} epochs of {sizes.steps} steps; FLOPs from XLA\'s cost '
      f'analysis of the compiled step; peak: '
      + (f'{peak[0]:.0f} TFLOP/s bf16, {peak[1]:.0f} TF32 (dense)' if peak else 'n/a '
         '(no peak known for this device)') + '.',
      '',
      '| check | ms | images/s | TFLOP/s | share of peak | notes |',
      '|---|---|---|---|---|---|']
  lines += [rows.get(n, Row(n, notes='missing')).markdown() for n in names]
  return '\n'.join(lines) + '\n'
