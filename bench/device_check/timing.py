"""The timed sections on this process's device: steps by epoch mode, vmapped
seeds, the DASH direction pass and evaluation; each returns table rows."""
from __future__ import annotations

import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from bench.constants import peak_tflops
from bench.device_check import steps
from bench.device_check.rows import Row
from bench.device_check.sizes import MODES


def random_data(n, image, num_seeds=0, seed=0):
  """Device arrays shaped as a launch's `data` (labels stacked per seed
  when num_seeds > 0)."""
  rng = np.random.default_rng(seed)
  y = rng.integers(0, 10, (max(num_seeds, 1), n), dtype=np.int32)
  return jax.device_put({
      'train_x': rng.integers(0, 256, (n, *image), dtype=np.uint8),
      'train_y': y if num_seeds else y[0],
      'mean': np.full((image[-1],), 127.5, np.float32),
      'std': np.full((image[-1],), 73.9, np.float32)})


def block(tree):
  jax.block_until_ready(tree)
  return tree


def peak_for(dtype):
  return peak_tflops(getattr(jax.devices()[0], 'device_kind', ''), dtype)


def median_s(fn, repeats):
  """Median wall seconds of `repeats` calls of fn() (its result blocked on)."""
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    block(fn())
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def time_steps(sizes, opt, dtype, modes=MODES):
  """{mode: Row} for one optimizer and dtype."""
  model = steps.make_model(sizes.model, dtype, sizes.width)
  step_cfg = steps.step_config(opt == 'SAM')
  n = sizes.steps * sizes.batch
  data = random_data(n, sizes.image)
  order = steps.epoch_order(n, sizes.batch)
  state = steps.make_state(model, sizes.image)
  compiled, flops = None, None
  if 'loop' in modes:
    compiled, flops = steps.compile_loop_step(state, data, order, n, step_cfg, sizes.batch)
  peak = peak_for(dtype)
  out = {}
  for mode in modes:
    def epoch(state, mode=mode):
      if mode == 'loop':
        return block(steps.loop_epoch(compiled, state, data, order, n, sizes.steps))[0]
      shape = steps.Epoch(n, sizes.steps, step_cfg, sizes.batch,
                          1 if mode == 'scan' else steps.scan_block())
      return block(steps.scan_epoch(state, data, shape))[0]
    start = time.perf_counter()
    state = epoch(state)  # compiles (scan)
    first = time.perf_counter() - start
    state = epoch(state)  # again: committed inputs can mean one more compile
    times = []
    for _ in range(sizes.repeats):
      start = time.perf_counter()
      state = epoch(state)
      times.append((time.perf_counter() - start) / sizes.steps)
    sec = statistics.median(times)
    tflops = flops / sec / 1e12 if flops else None
    out[mode] = Row('', sec * 1e3, sizes.batch / sec, tflops,
                    100 * tflops / peak if (tflops and peak) else None,
                    f'{"n/a" if flops is None else f"{flops / 1e9:.1f}"} GFLOP/step; '
                    f'first epoch (compile) {first:.1f} s', flops and flops / 1e9)
  return out


def time_seeds(sizes, num_seeds, flops_per_step):
  """S seeds as one vmapped program: ms per step of all S together."""
  model = steps.make_model(sizes.model, 'float32', sizes.width)
  step_cfg = steps.step_config(False)
  n = sizes.steps * sizes.batch
  data = random_data(n, sizes.image, num_seeds=num_seeds)
  states = [steps.make_state(model, sizes.image, seed) for seed in range(num_seeds)]
  carry = {'states': jax.tree.map(lambda *xs: jnp.stack(xs), *states),
           'keys': jax.random.split(jax.random.PRNGKey(0), num_seeds)}
  buffer_idx = jnp.tile(jnp.arange(n, dtype=jnp.int32), (num_seeds, 1))

  def epoch():
    carry['states'], carry['keys'], _ = steps.seeds_epoch(
        carry['states'], carry['keys'], data, buffer_idx,
        steps.Epoch(n, sizes.steps, step_cfg, sizes.batch))
    return carry
  median_s(epoch, 2)  # compile; then again, as time_steps does
  sec = median_s(epoch, sizes.repeats) / sizes.steps
  tflops = flops_per_step * num_seeds / sec / 1e12 if flops_per_step else None
  peak = peak_for('float32')
  return Row('', sec * 1e3, num_seeds * sizes.batch / sec, tflops,
             100 * tflops / peak if (tflops and peak) else None,
             'ms per step of all S seeds together')


def time_direction_and_eval(sizes):
  """(direction pass row, evaluation row) of a fresh float32 model."""
  model = steps.make_model(sizes.model, 'float32', sizes.width)
  state = steps.make_state(model, sizes.image)
  n = sizes.dir_chunks * sizes.dir_chunk
  data = random_data(n, sizes.image)
  buffer_idx = jnp.arange(n, dtype=jnp.int32)

  def direction():
    return steps.direction(state, data, buffer_idx, sizes.dir_chunks, sizes.dir_chunk)
  test = random_data(sizes.eval_n, sizes.image, seed=1)

  def evaluate():
    return steps.evaluate(state, test['train_x'], test['train_y'], test['mean'],
                          test['std'], sizes.eval_batch)
  median_s(direction, 1)  # compiles
  dir_s = median_s(direction, sizes.repeats)
  median_s(evaluate, 1)
  eval_s = median_s(evaluate, sizes.repeats)
  return (Row('', dir_s / sizes.dir_chunks * 1e3, n / dir_s,
              notes=f'ms per chunk of {sizes.dir_chunk}; {sizes.dir_chunks} chunks, '
                    f'mode {steps.epoch_mode()}'),
          Row('', eval_s * 1e3, sizes.eval_n / eval_s,
              notes=f'ms for {sizes.eval_n:,} test images, batch {sizes.eval_batch}'))
