"""ResNet-18 training throughput on this machine's JAX backend, and what it
means for the paper's protocol.

    python -m bench.throughput                 # GPU: full measurement
    python -m bench.throughput --steps 3       # a CPU smoke run

Prints images/s of the CIFAR-size (32x32, batch 128) train step as the
protocol runs it (SGD and SAM), the FLOP/s it reaches (FLOPs from XLA's cost
analysis of the compiled step), the share of the accelerator's peak (a
table of dense TF32 tensor-core peaks: XLA uses TF32 for float32 convolutions
and matmuls on these GPUs by default), and the projected time of the paper's
50-experiment CIFAR-10 protocol from the paper's own step counts. With
--markdown FILE the table is appended to FILE.
"""
from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from bench.constants import PAPER_EXPERIMENTS, PAPER_MEAN_STEPS, peak_tflops
from configs.digits import get_config
from dash_jax import models, optim, setup, train


def measure(step_cfg, steps, repeats, batch_size=128, precision='float32'):
  """Median seconds per train step of ResNet-18 on CIFAR-size data, and the
  step's FLOPs."""
  config = get_config()
  config.precision = precision
  model = models.get('resnet18').build(config, 10)  # this backend's kernels
  state = train.create_state(model, optim.sgd(0.001), jax.random.PRNGKey(0),
                             (32, 32, 3), keep_init=False)
  n = steps * batch_size
  rng = np.random.default_rng(0)
  data = jax.device_put({
      'train_x': rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),
      'train_y': rng.integers(0, 10, (n,), dtype=np.int32),
      'mean': np.full((3,), 125.0, np.float32), 'std': np.full((3,), 63.0, np.float32)})
  buffer_idx = jnp.arange(n, dtype=jnp.int32)
  order = train.epoch_order(jax.random.PRNGKey(1), buffer_idx, n, batch_size)
  scan = models.epoch_mode('resnet18') == 'scan'  # as setup.epoch_mode
  group_data = dict(data, train_y=data['train_y'][None])  # a group of one seed

  flops = None
  try:
    sums = jnp.zeros((2,), jnp.float32)
    cost = train.loop_step.lower(state, sums, train.Epoch(data, order, n), 0,
                                 layout=train.Layout(step_cfg, batch_size)).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    flops = float(cost.get('flops', 0.0)) or None
  except Exception:  # noqa: BLE001, S110 - cost analysis is best effort
    pass

  def epoch(state):
    if scan:
      states, keys = jax.tree.map(lambda x: x[None], (state, jax.random.PRNGKey(2)))
      states, _, _, sums, _ = train.device_epochs(
          states, keys, jnp.ones((1,), bool),
          train.EpochSource(group_data, buffer_idx[None], n, steps),
          train.CallBounds(0, 1, np.float32(2.0)),
          layout=train.Layout(step_cfg, batch_size, setup.SCAN_BLOCK_ACCELERATOR))
      state = train.take_seed(states, 0)
    else:
      sums = jnp.zeros((2,), jnp.float32)
      for b in range(steps):
        state, sums = train.loop_step(state, sums, train.Epoch(data, order, n), b,
                                      layout=train.Layout(step_cfg, batch_size))
    sums.block_until_ready()
    return state

  state = epoch(state)  # compile
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    state = epoch(state)
    times.append((time.perf_counter() - start) / steps)
  return statistics.median(times), flops


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--steps', type=int, default=50, help='steps per timed epoch')
  parser.add_argument('--repeats', type=int, default=5)
  parser.add_argument('--markdown', default='', help='append the table to this file')
  parser.add_argument('--precision', default='float32', choices=('float32', 'bfloat16'))
  args = parser.parse_args(argv)

  device = jax.devices()[0]
  kind = getattr(device, 'device_kind', device.platform)
  peak = peak_tflops(kind, 'float32')  # the table's column: share of TF32 peak
  rows = []
  sgd_s = None
  for name, cfg in (('SGD', train.StepConfig()), ('SAM', train.StepConfig(sam_rho=0.1))):
    sec, flops = measure(cfg, args.steps, args.repeats, precision=args.precision)
    if name == 'SGD':
      sgd_s = sec
    tflops = flops / sec / 1e12 if flops else None
    rows.append((name, sec * 1e3, 128 / sec, flops, tflops,
                 100 * tflops / peak if (tflops and peak) else None))

  lines = [f'### ResNet-18 training throughput ({jax.default_backend()}: {kind})', '',
           (f'`python -m bench.throughput --steps {args.steps} --repeats {args.repeats} '
           f'--precision {args.precision}`, '
           f'{datetime.date.today()}, jax {jax.__version__}, {platform.machine()}; '
           f'batch 128 of 32x32x3, median of {args.repeats} epochs of {args.steps} steps.'), '',
           '| step | ms/step | images/s | GFLOP/step (XLA count) | TFLOP/s | share of TF32 peak |',
           '|---|---|---|---|---|---|']
  for name, ms, ips, flops, tf, share in rows:
    lines.append(f'| {name} | {ms:.2f} | {ips:,.0f} | '
                 f'{"n/a" if flops is None else f"{flops / 1e9:.1f}"} | '
                 f'{"n/a" if tf is None else f"{tf:.3f}"} | '
                 f'{"n/a" if share is None else f"{share:.1f}%"} |')
  total_steps = PAPER_EXPERIMENTS * sum(PAPER_MEAN_STEPS.values())
  lines += ['', 'Projected CIFAR-10 protocol (50 experiments, the paper\'s mean steps: '
            + ', '.join(f'{k} {v}' for k, v in PAPER_MEAN_STEPS.items())
            + f'; {total_steps:,} SGD steps for the four types, one seed): '
            f'{total_steps * sgd_s / 3600:.1f} h of train steps with SGD, '
            f'{total_steps * rows[1][1] / 1e3 / 3600:.1f} h with SAM (DASH direction '
            f'passes and evaluation add about one epoch per experiment).']
  text = '\n'.join(lines)
  print(text)
  if args.markdown:
    with open(args.markdown, 'a') as f:
      f.write('\n' + text + '\n')
  return rows


if __name__ == '__main__':
  main()
