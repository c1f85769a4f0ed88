"""The device check's kernels: every call into dash_jax.train (and the model
and optimizer it trains) is here, so an API change is fixed in one file."""
from __future__ import annotations

import contextlib
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from dash_jax import models, optim, setup, train


def launch_config(model: str):
  """configs/digits.py with `model`: the config a launch would build."""
  from configs.digits import get_config  # run from the repo root (python -m)
  config = get_config()
  config.model = model
  return config


def make_model(name: str, dtype: str, width: int):
  """The model as a launch builds it: this backend's kernels, `dtype` as
  config.precision ('float32' or 'bfloat16')."""
  config = launch_config(name)
  config.width, config.precision = width, dtype
  return models.get(name).build(config, 10)


_TX = optim.sgd(0.01)  # one object: states of several seeds must stack


def make_state(model, input_shape, seed=0):
  return train.create_state(model, _TX, jax.random.PRNGKey(seed), input_shape,
                            keep_init=False)


def step_config(sam: bool):
  return train.StepConfig(sam_rho=0.1 if sam else None)


def epoch_order(n, batch):
  """One epoch's batch order over `n` examples."""
  return train.epoch_order(jax.random.PRNGKey(1), jnp.arange(n, dtype=jnp.int32), n, batch)


def compile_loop_step(state, data, order, n, step_cfg, batch):
  """(compiled step, its FLOPs per call from XLA's cost analysis or None)."""
  sums = jnp.zeros((2,), jnp.float32)
  compiled = train.loop_step.lower(state, sums, train.Epoch(data, order, n), 0,
                                   layout=train.Layout(step_cfg, batch)).compile()
  flops = None
  with contextlib.suppress(Exception):  # cost analysis is best effort
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    flops = float(cost.get('flops', 0.0)) or None
  return compiled, flops


def loop_epoch(compiled, state, data, order, n, steps):
  sums = jnp.zeros((2,), jnp.float32)
  for b in range(steps):
    state, sums = compiled(state, sums, train.Epoch(data, order, n), b)
  return state, sums


def scan_block() -> int:
  """Steps per host round trip of a compiled epoch, as a launch picks it."""
  return setup.scan_block(launch_config('resnet18').scan_block)


def epoch_mode() -> str:
  """What a launch picks for ResNet-18 on this backend."""
  config = launch_config('resnet18')
  return setup.epoch_mode(config.epoch_mode, config.model)


@dataclasses.dataclass(frozen=True)
class Epoch:
  """One timed epoch's shape: `steps` batches of `batch` from `n` examples."""
  n: int
  steps: int
  step_cfg: object  # train.StepConfig
  batch: int
  block: int = 1  # steps per host round trip of a compiled epoch


def _one_epoch(states, keys, data, buffer_idx, epoch: Epoch):
  """One device_epochs call of one epoch (the threshold is out of reach)."""
  n, steps, step_cfg = epoch.n, epoch.steps, epoch.step_cfg
  batch, block = epoch.batch, epoch.block
  active = jnp.ones((keys.shape[0],), bool)
  states, keys, _, metrics, _ = train.device_epochs(
      states, keys, active, train.EpochSource(data, buffer_idx, n, steps),
      train.CallBounds(0, 1, np.float32(2.0)), layout=train.Layout(step_cfg, batch, block))
  return states, keys, metrics[0]


def scan_epoch(state, data, epoch: Epoch):
  """One epoch as a launch runs it in mode 'scan': device_epochs on a group
  of one seed."""
  states, keys = jax.tree.map(lambda x: x[None], (state, jax.random.PRNGKey(1)))
  group_data = dict(data, train_y=data['train_y'][None])
  buffer_idx = jnp.arange(epoch.n, dtype=jnp.int32)[None]
  states, _, sums = _one_epoch(states, keys, group_data, buffer_idx, epoch)
  return train.take_seed(states, 0), sums[0]


def seeds_epoch(states, keys, data, buffer_idx, epoch: Epoch):
  """One epoch of S seeds stacked on axis 0 as one program, in blocks as a
  launch runs them."""
  return _one_epoch(states, keys, data, buffer_idx,
                    dataclasses.replace(epoch, block=scan_block()))


def direction(state, data, buffer_idx, num_chunks, chunk_size):
  return train.full_data_direction(state, data, buffer_idx, num_chunks, 0.3,
                                   chunk_size=chunk_size, mode=epoch_mode())


def evaluate(state, x, y, mean, std, batch):
  return train.evaluate(state, x, y, mean, std, batch_size=batch)
