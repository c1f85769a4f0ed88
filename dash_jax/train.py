"""Pure training steps and the 'train until converged' loop of one experiment.

Data stays on the device as uint8; a batch is an index slice of an epoch
permutation, normalised inside the jitted step. Every batch has the same
shape (the final partial batch is masked), so growing the training set from
experiment to experiment never recompiles anything.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable, NamedTuple, Optional

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.training import train_state

from dash_jax import batches, dash, optim, parallel, recycle, signals
from dash_jax.errors import UserError


class TrainState(train_state.TrainState):
  batch_stats: Any
  init_params: Any = None  # anchor of the l2_init regulariser


@dataclasses.dataclass(frozen=True)
class StepConfig:
  """Static choices compiled into the step (hashable: a jit static arg)."""
  regularizer: Optional[Callable[[Any, Any], jax.Array]] = None
  sam_rho: Optional[float] = None  # None = plain SGD
  sam_bn_second_pass: bool = True
  # SoTA recipe: (key, float pixels 0..255) -> pixels, before normalising.
  augment: Optional[Callable[[jax.Array, jax.Array], jax.Array]] = None
  # SoTA recipe: (epoch, batch, num_batches) -> learning rate of this step.
  lr_schedule: Optional[Callable[..., jax.Array]] = None
  # config.last_batch='balanced': batch b holds its share of n over the
  # epoch's batches (dash_jax/batches.py), not b * batch_size onwards.
  balanced: bool = False


@dataclasses.dataclass(frozen=True)
class Layout:
  """An epoch program's static choices (hashable: one jit static arg, so one
  compile serves every experiment): the step, the batch size and `block`,
  the steps a host round trip inside a compiled epoch (_fori_epoch)."""
  step_cfg: StepConfig
  batch_size: int
  block: int = 1


@flax.struct.dataclass
class EpochSource:
  """What an experiment's epochs draw from, traced (a new n compiles
  nothing): the data dict, the buffer order, n (buffer entries trained on)
  and the batches an epoch (one seed's, or a group's with a leading seed
  axis on train_y and buffer_idx)."""
  data: dict
  buffer_idx: Any
  n: Any
  num_batches: Any


@flax.struct.dataclass
class Epoch:
  """One epoch's traced inputs to its steps: the data dict, the epoch's
  batch order (epoch_order), n, the batches an epoch, the epoch's number
  (for lr_schedule) and the key of the steps' augmentation and dropout (None:
  neither)."""
  data: dict
  order: Any
  n: Any
  num_batches: Any = 1
  number: Any = 0
  key: Any = None


@flax.struct.dataclass
class CallBounds:
  """Where one device_epochs call starts and stops, traced: the first
  epoch's number, the most epochs it runs (<= EPOCHS_PER_CALL) and the
  running accuracy that stops a seed (device_threshold's float32)."""
  first_epoch: Any
  max_epochs: Any
  threshold: Any


LOWER_LR = 'lower --config.learning_rate'


class NonFiniteLoss(UserError):
  """A NaN/inf training loss: `what` happened, `fix` is what to do; `seed`
  says which seed of a group (None: a plain run)."""

  def __init__(self, what, seed=None, fix=LOWER_LR):
    super().__init__(f'{what}; {fix}')
    self.what, self.seed, self.fix = what, seed, fix


def normalise(x_uint8, mean, std):
  return (x_uint8.astype(jnp.float32) - mean) / std


def forward(state, params, batch_stats, x, train, mask=None, rng=None):
  """Logits and the BatchNorm statistics after this pass (`rng` drives
  dropout in training mode)."""
  variables = {'params': params, 'batch_stats': batch_stats}
  if not train:
    return state.apply_fn(variables, x, train=False), batch_stats
  rngs = None if rng is None else {'dropout': rng}
  logits, updated = state.apply_fn(variables, x, train=True, mask=mask,
                                   mutable=['batch_stats'], rngs=rngs)
  return logits, updated.get('batch_stats', batch_stats)


def masked_mean(values, mask):
  return jnp.sum(values * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def train_loss(params, batch_stats, state, batch, regularizer, rng=None):
  """Masked mean cross-entropy (plus the regulariser) of `batch`, (x, y, mask);
  aux: the BatchNorm statistics after the pass and the batch accuracy."""
  x, y, mask = batch
  logits, batch_stats = forward(state, params, batch_stats, x, True, mask, rng)
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, y)
  loss = masked_mean(ce, mask)
  if regularizer is not None:
    loss = loss + regularizer(params, state.init_params)
  acc = masked_mean((jnp.argmax(logits, -1) == y).astype(jnp.float32), mask)
  return loss, (batch_stats, acc)


def train_step(state: TrainState, x, y, mask, step_cfg: StepConfig, key=None):
  """One SGD or SAM step; returns the new state and (batch acc, batch loss).

  `key` feeds dropout (each SAM pass draws its own mask, as in PyTorch).
  """
  rngs = (None, None) if key is None else tuple(jax.random.split(key))
  grad_fn = jax.value_and_grad(train_loss, has_aux=True)
  (loss, (batch_stats, acc)), grads = grad_fn(
      state.params, state.batch_stats, state, (x, y, mask), step_cfg.regularizer, rngs[0])
  if step_cfg.sam_rho is not None:
    ascent, _ = optim.sam_ascent(step_cfg.sam_rho).update(grads, optax.EmptyState())
    (_, (batch_stats_2, _)), grads = grad_fn(
        optax.apply_updates(state.params, ascent), batch_stats, state, (x, y, mask),
        step_cfg.regularizer, rngs[1])
    if step_cfg.sam_bn_second_pass:
      batch_stats = batch_stats_2
  updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
  state = state.replace(step=state.step + 1,
                        params=optax.apply_updates(state.params, updates),
                        opt_state=opt_state, batch_stats=batch_stats)
  return state, jnp.stack([acc, loss])


def eval_step(state: TrainState, x, y, mask):
  """(number correct, summed loss) over the valid examples of a batch."""
  logits, _ = forward(state, state.params, state.batch_stats, x, False)
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, y)
  correct = (jnp.argmax(logits, -1) == y).astype(jnp.float32)
  return jnp.stack([jnp.sum(correct * mask), jnp.sum(ce * mask)])


# ----------------------------------------------------------------- batching


@functools.partial(jax.jit, static_argnames='batch_size')
def epoch_order(key, buffer_idx, n, batch_size):
  """Dataset indices of a random permutation of the first n buffer entries.

  Sorting uniform keys with the tail pushed last keeps one shape for every n;
  padded by one batch so the last dynamic slice never runs off the end.
  """
  u = jax.random.uniform(key, buffer_idx.shape)
  u = jnp.where(jnp.arange(u.shape[0]) < n, u, 2.0)
  order = buffer_idx[jnp.argsort(u)]
  return jnp.concatenate([order, jnp.zeros((batch_size,), order.dtype)])


def _batch_span(b, n, batch_size, num_batches, balanced):
  """(first position, mask) of batch b in the epoch order. 'balanced': the
  first n mod k batches hold n // k + 1 examples, the others n // k."""
  if not balanced:
    start = b * batch_size
    return start, (start + jnp.arange(batch_size) < n).astype(jnp.float32)
  q, r = n // num_batches, n % num_batches
  start = b * q + jnp.minimum(b, r)
  return start, (jnp.arange(batch_size) < q + (b < r)).astype(jnp.float32)


def _train_batch(data, order, span, batch_size, augment=None, key=None):
  """The batch at `span` (_batch_span's (start, mask)): sliced, augmented,
  normalised and sharded."""
  start, mask = span
  idx = jax.lax.dynamic_slice(order, (start,), (batch_size,))
  x = data['train_x'][idx]
  if augment is not None:
    x = augment(key, x.astype(jnp.float32))
  x = normalise(x, data['mean'], data['std'])
  shard = parallel.shard_batch
  return shard(x), shard(data['train_y'][idx]), shard(mask)


def _epoch_step(state, epoch: Epoch, b, layout: Layout):
  """Batch b of an epoch: slice, augment, normalise, schedule the lr, step.

  Randomness of step b is fold_in(epoch.key, b): the same whatever the epoch mode.
  """
  step_cfg = layout.step_cfg
  aug_key = step_key = None
  if epoch.key is not None:
    aug_key, step_key = jax.random.split(jax.random.fold_in(epoch.key, b))
  span = _batch_span(b, epoch.n, layout.batch_size, epoch.num_batches, step_cfg.balanced)
  x, y, mask = _train_batch(epoch.data, epoch.order, span, layout.batch_size, step_cfg.augment,
                            aug_key)
  if step_cfg.lr_schedule is not None:
    lr = step_cfg.lr_schedule(epoch.number, b, epoch.num_batches)
    state = state.replace(opt_state=optim.set_learning_rate(state.opt_state, lr))
  return train_step(state, x, y, mask, step_cfg, step_key)


@functools.partial(jax.jit, static_argnames='layout', donate_argnums=(0, 1))
def loop_step(state, sums, epoch: Epoch, b, *, layout: Layout):
  """Step b of an epoch; metrics summed on device (no host sync).

  epoch.number / epoch.num_batches feed step_cfg.lr_schedule; epoch.key feeds
  augmentation and dropout (required when step_cfg.augment is set or the
  model has dropout). layout.block is unused (one step a call).
  """
  state, metrics = _epoch_step(state, epoch, b, layout)
  return state, sums + metrics


def _fori_epoch(state, epoch: Epoch, layout: Layout):
  """The steps of one epoch as one compiled loop.

  block=1: one loop iteration a step (its trip count is traced, so XLA:GPU
  reads the predicate back to the host every step). block=K: a traced loop
  over blocks, each a fixed-length scan of K steps whose tail past the epoch
  is skipped by a cond: at most one host round trip per K steps, the same
  steps in the same order.
  """
  num_batches, block = epoch.num_batches, layout.block

  def body(b, carry):
    state, sums = carry
    state, metrics = _epoch_step(state, epoch, b, layout)
    return state, sums + metrics

  carry = (state, jnp.zeros((2,), jnp.float32))
  if block == 1:
    return jax.lax.fori_loop(0, num_batches, body, carry)

  def run_block(blk, carry):
    def one(carry, i):
      b = blk * block + i
      return jax.lax.cond(b < num_batches, lambda c: body(b, c), lambda c: c,
                          carry), None
    return jax.lax.scan(one, carry, jnp.arange(block))[0]
  return jax.lax.fori_loop(0, (num_batches + block - 1) // block, run_block, carry)


def _epoch_keys(key, buffer_idx, n, batch_size):
  """An epoch's draws from the run's key, the same in every epoch mode:
  (next key, batch order, key of the steps' augmentation and dropout)."""
  next_key, epoch_key = jax.random.split(key)
  order = epoch_order(epoch_key, buffer_idx, n, batch_size)
  return next_key, order, jax.random.fold_in(epoch_key, 1)


def _keyed_epoch(state, key, source: EpochSource, epoch_number, layout: Layout):
  """One epoch drawn from `key`; returns the state, the next key and the sums."""
  key, order, step_key = _epoch_keys(key, source.buffer_idx, source.n, layout.batch_size)
  epoch = Epoch(source.data, order, source.n, source.num_batches, epoch_number, step_key)
  state, sums = _fori_epoch(state, epoch, layout)
  return state, key, sums


# ------------------------------------------------------------ seed groups
# A group of S runs (seeds) trains as one program: the state, keys, labels
# and buffer carry a leading seed axis; the images are shared. A plain run is
# a group of one, which runs the unbatched program on its only seed.

SEED_DATA_AXES = {'train_x': None, 'train_y': 0, 'mean': None, 'std': None}


def seed_map(fn, num_seeds: int, in_axes=0):
  """fn over a leading seed axis: jax.vmap for several seeds; for one, fn on
  seed 0 with the axis put back (the plain program, the plain numbers)."""
  if num_seeds > 1:
    return jax.vmap(fn, in_axes=in_axes)

  def single(*args):
    axes = in_axes if isinstance(in_axes, (tuple, list)) else (in_axes,) * len(args)
    out = fn(*(_take_first(a, ax) for a, ax in zip(args, axes)))
    return jax.tree.map(lambda x: x[None], out)
  return single


def _take_first(tree, axis):
  if axis is None:
    return tree
  if isinstance(axis, dict):
    return {k: _take_first(v, axis.get(k, 0)) for k, v in tree.items()}
  return jax.tree.map(lambda x: x[0], tree)


def take_seed(tree, i: int):
  """Seed i's slice of a group's tree."""
  return jax.tree.map(lambda x: x[i], tree)


def split_keys(keys):
  """`key, k = jax.random.split(key)` for every seed of a group."""
  pairs = seed_map(jax.random.split, keys.shape[0])(keys)
  return pairs[:, 0], pairs[:, 1]


def _keep(active, new, old):
  """A seed whose `active` flag is off keeps its old state and key."""
  return jax.tree.map(lambda a, b: jnp.where(active, a, b), new, old)


class EpochsRun(NamedTuple):
  """What one device_epochs call leaves: the group's states and keys, the
  epochs run, their (acc, loss) rows per seed (EPOCHS_PER_CALL, S, 2) and
  which seeds ran each (EPOCHS_PER_CALL, S)."""
  states: Any
  keys: Any
  count: Any
  metrics: Any
  ran: Any


class _EpochsCarry(NamedTuple):
  """device_epochs' loop state: EpochsRun's fields, the seeds still
  running and the index of the next epoch."""
  states: Any
  keys: Any
  active: Any
  i: Any
  metrics: Any
  ran: Any


@functools.partial(jax.jit, static_argnames='layout', donate_argnums=(0,))
def device_epochs(states, keys, active, source: EpochSource, bounds: CallBounds, *,
                  layout: Layout):
  """Up to `bounds.max_epochs` (<= EPOCHS_PER_CALL) epochs of a seed group in
  one program. Each active seed draws its epochs from its key as the host
  loop does and stops after the first epoch whose running accuracy reaches
  `bounds.threshold` or whose loss is not finite; the call ends when no seed
  is active. Returns an EpochsRun.
  """
  num_seeds = keys.shape[0]

  def one(state, key, active, data, buffer_idx, epoch_number):
    seed_source = EpochSource(data, buffer_idx, source.n, source.num_batches)
    new_state, new_key, sums = _keyed_epoch(state, key, seed_source, epoch_number, layout)
    return _keep(active, new_state, state), _keep(active, new_key, key), sums
  run_epoch = seed_map(one, num_seeds, in_axes=(0, 0, 0, SEED_DATA_AXES, 0, None))

  def body(c: _EpochsCarry) -> _EpochsCarry:
    states, keys, sums = run_epoch(c.states, c.keys, c.active, source.data,
                                   source.buffer_idx, bounds.first_epoch + c.i)
    acc_loss = sums / source.num_batches.astype(jnp.float32)
    stop = (acc_loss[:, 0] >= bounds.threshold) | ~jnp.isfinite(acc_loss[:, 1])
    return _EpochsCarry(states, keys, c.active & ~stop, c.i + 1,
                        c.metrics.at[c.i].set(acc_loss), c.ran.at[c.i].set(c.active))

  def cond(c: _EpochsCarry):
    return jnp.any(c.active) & (c.i < bounds.max_epochs)

  metrics = jnp.zeros((EPOCHS_PER_CALL, num_seeds, 2), jnp.float32)
  ran = jnp.zeros((EPOCHS_PER_CALL, num_seeds), bool)
  end = jax.lax.while_loop(
      cond, body, _EpochsCarry(states, keys, active, jnp.int32(0), metrics, ran))
  return EpochsRun(end.states, end.keys, end.i, end.metrics, end.ran)


@functools.partial(jax.jit, static_argnames='batch_size')
def _epoch_draws(keys, active, buffer_idx, n, batch_size):
  """Each seed's next key, epoch order and step key (the host loop's epoch)."""
  def one(key, active, buffer_idx):
    next_key, order, step_key = _epoch_keys(key, buffer_idx, n, batch_size)
    return _keep(active, next_key, key), order, step_key
  return seed_map(one, keys.shape[0])(keys, active, buffer_idx)


@functools.partial(jax.jit, static_argnames='layout', donate_argnums=(0, 1))
def group_loop_step(states, sums, active, group_epoch: Epoch, b, *, layout: Layout):
  """Step b of an epoch for every active seed of a group (loop_step's body);
  `group_epoch` holds each seed's order and key (and labels) on a leading axis."""
  def one(state, sums, active, data, order, step_key):
    epoch = Epoch(data, order, group_epoch.n, group_epoch.num_batches, group_epoch.number,
                  step_key)
    new_state, metrics = _epoch_step(state, epoch, b, layout)
    return _keep(active, new_state, state), sums + metrics
  return seed_map(one, group_epoch.key.shape[0], in_axes=(0, 0, 0, SEED_DATA_AXES, 0, 0))(
      states, sums, active, group_epoch.data, group_epoch.order, group_epoch.key)


@functools.partial(jax.jit, static_argnames='batch_size')
def evaluate(state, x_all, y_all, mean, std, batch_size):
  """(accuracy, mean loss) over a whole array set, in fixed-shape batches."""
  total = x_all.shape[0]

  def body(b, sums):
    idx = b * batch_size + jnp.arange(batch_size)
    mask = (idx < total).astype(jnp.float32)
    idx = jnp.minimum(idx, total - 1)
    x = parallel.shard_batch(normalise(x_all[idx], mean, std))
    y, mask = parallel.shard_batch(y_all[idx]), parallel.shard_batch(mask)
    return sums + eval_step(state, x, y, mask)

  sums = jax.lax.fori_loop(0, math.ceil(total / batch_size), body,
                           jnp.zeros((2,), jnp.float32))
  return sums / total


def _direction_fns(state, data, buffer_idx, chunk_size):
  """(chunk i -> batch, (params, batch) -> gradient) of the direction pass."""
  def get_batch(i):
    idx = jax.lax.dynamic_slice(buffer_idx, (i * chunk_size,), (chunk_size,))
    x = normalise(data['train_x'][idx], data['mean'], data['std'])
    return parallel.shard_batch(x), parallel.shard_batch(data['train_y'][idx])

  def grad_fn(params, batch):
    x, y = batch
    def loss(p):
      logits, _ = forward(state, p, state.batch_stats, x, False)
      return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    return jax.grad(loss)(params)
  return get_batch, grad_fn


def full_data_direction(state, data, buffer_idx, num_chunks_seen, alpha,
                        chunk_size, mode='scan'):
  """EMA of negative gradients over the buffer, oldest chunk first.

  BatchNorm in evaluation mode (running statistics, not updated); no
  regulariser; batches of one chunk, as the original code. `mode` as the
  epochs': 'scan' is one compiled loop, 'loop' a jitted chunk step called
  from Python (faster for convnets on XLA:CPU); both give the same numbers.
  """
  if mode == 'scan':
    return _scan_direction(state, data, buffer_idx, num_chunks_seen, alpha,
                           chunk_size=chunk_size)
  g = jax.tree.map(jnp.zeros_like, state.params)
  for i in range(int(num_chunks_seen)):
    g = _direction_step(g, state, data, buffer_idx, i, alpha, chunk_size=chunk_size)
  return g


@functools.partial(jax.jit, static_argnames='chunk_size')
def _scan_direction(state, data, buffer_idx, num_chunks_seen, alpha, chunk_size):
  get_batch, grad_fn = _direction_fns(state, data, buffer_idx, chunk_size)
  return dash.ema_direction(grad_fn, state.params,
                            (get_batch, num_chunks_seen), alpha)


@functools.partial(jax.jit, static_argnames='chunk_size')
def _direction_step(g, state, data, buffer_idx, i, alpha, chunk_size):
  get_batch, grad_fn = _direction_fns(state, data, buffer_idx, chunk_size)
  return dash.ema_update(g, grad_fn(state.params, get_batch(i)), alpha)


def buffer_activity(state, data, buffer_idx, num_chunks_seen, layers, chunk_size,
                    mode='scan'):
  """Each unit's mean |activation| (recycle.unit_activity) over the buffer's
  first `num_chunks_seen` chunks, in batches of one chunk, BatchNorm in
  evaluation mode: the data and pass DASH's direction uses. `mode` as
  full_data_direction's; both give the same numbers."""
  if mode == 'scan':
    return _scan_activity(state, data, buffer_idx, num_chunks_seen, layers=tuple(layers),
                          chunk_size=chunk_size)
  sums = None
  for i in range(int(num_chunks_seen)):
    acts = _chunk_activity(state, data, buffer_idx, i, layers=tuple(layers),
                           chunk_size=chunk_size)
    sums = acts if sums is None else [s + a for s, a in zip(sums, acts)]
  return [s / num_chunks_seen for s in sums]


def _activity_of_chunk(state, data, buffer_idx, i, layers, chunk_size):
  get_batch, _ = _direction_fns(state, data, buffer_idx, chunk_size)
  variables = {'params': state.params, 'batch_stats': state.batch_stats}
  return recycle.unit_activity(state.apply_fn, variables, get_batch(i)[0], layers)


@functools.partial(jax.jit, static_argnames=('layers', 'chunk_size'))
def _scan_activity(state, data, buffer_idx, num_chunks_seen, layers, chunk_size):
  def body(i, sums):
    acts = _activity_of_chunk(state, data, buffer_idx, i, layers, chunk_size)
    return [s + a for s, a in zip(sums, acts)]
  first = _activity_of_chunk(state, data, buffer_idx, 0, layers, chunk_size)
  sums = jax.lax.fori_loop(1, num_chunks_seen, body, first)
  return [s / num_chunks_seen for s in sums]


_chunk_activity = jax.jit(_activity_of_chunk, static_argnames=('layers', 'chunk_size'))


# ------------------------------------------------------- one experiment


@dataclasses.dataclass
class Progress:
  """Where an experiment's training stands; enough to resume it exactly."""
  epochs: int = 0
  acc_sum: float = 0.0
  loss_sum: float = 0.0
  last_acc: float = 0.0

  def converged(self, converge_acc, max_epoch) -> bool:
    return self.last_acc >= converge_acc or self.epochs >= max_epoch

  def stats(self, num_batches) -> 'TrainStats':
    e = self.epochs
    return TrainStats(self.acc_sum / e, self.loss_sum / e, self.last_acc,
                      e * num_batches, e)


@dataclasses.dataclass
class TrainStats:
  """What one 'train until converged' reports (means over epochs)."""
  train_acc: float
  train_loss: float
  last_epoch_acc: float
  steps: int
  epochs: int


EPOCHS_PER_CALL = 64  # most epochs one device_epochs call runs (its metrics buffer)


def running_metrics(sums, num_batches):
  """(acc, loss) of an epoch: its summed batch figures / batches, in float32
  (the same division on host and device, so both stop at the same epoch)."""
  return np.asarray(sums, np.float32) / np.float32(num_batches)


def device_threshold(converge_acc: float) -> np.float32:
  """The float32 t with (acc >= t) == (float(acc) >= converge_acc) for every
  float32 acc: the device loop's convergence test equals the host's."""
  t = np.float32(converge_acc)
  return t if float(t) >= converge_acc else np.nextafter(t, np.float32(np.inf))


@dataclasses.dataclass(frozen=True)
class TrainOptions:
  """How one experiment trains: the step, the stopping rule and the epoch
  program (a run's values, the same in every experiment)."""
  step_cfg: StepConfig
  batch_size: int
  max_epoch: int
  converge_acc: float
  mode: str = 'scan'  # 'scan': device_epochs calls; 'loop': a jitted step a batch
  block: int = 1  # steps a host round trip inside a 'scan' epoch
  epochs_per_call: int = EPOCHS_PER_CALL  # most epochs one 'scan' call runs
  checkpoint_every: int = 0  # epochs between on_checkpoint calls; 0 = none
  # A model whose BatchNorm sees one value per channel for one example: when
  # n = 1 mod batch_size the epoch's last batch, of one example, is left out
  # (a different example each epoch, as the order is drawn anew): PyTorch's
  # DataLoader(drop_last=False) would hand BatchNorm1d that batch and raise,
  # and Flax would zero its output. Other n: unchanged.
  drop_single: bool = False
  # config.last_batch: 'keep' (the original), 'drop_small' or 'balanced'
  # (dash_jax/batches.py).
  last_batch: str = 'keep'

  @property
  def step(self) -> StepConfig:
    """The step's static choices, with this epoch layout's."""
    return dataclasses.replace(self.step_cfg, balanced=self.last_batch == 'balanced')


@dataclasses.dataclass(frozen=True)
class ExperimentData:
  """What an experiment's epochs draw from: the group's data dict (train_x,
  train_y (S, N), mean, std), each seed's buffer order (S, N), and n, the
  number of buffer entries trained on."""
  data: dict
  buffer_idx: Any
  n: int


@dataclasses.dataclass(frozen=True)
class EpochHooks:
  """What train_until_converged reports to and resumes from (none of it
  changes what is computed)."""
  experiment: int = 0  # names where a non-finite loss happened
  seeds: Any = None  # the group's seeds, or None for a plain run
  progress: Any = None  # one Progress a seed: resumes an interrupted experiment
  on_epoch: Any = None  # (i, epochs_done, acc, loss, states) -> None
  on_checkpoint: Any = None  # (states, keys, progress) -> None


def train_until_converged(states, keys, inputs: ExperimentData, opts: TrainOptions,
                          hooks: EpochHooks = EpochHooks()):
  """Epochs of shuffled batches for a seed group (leading axis S) until each
  seed's epoch running train accuracy reaches `opts.converge_acc` or
  `opts.max_epoch` epochs ran; a finished seed is frozen while the others go on.

  mode 'scan': up to `epochs_per_call` epochs a device call (device_epochs,
  `block` steps a host round trip on the device), one host sync a call;
  'loop': one jitted step a batch, one sync an epoch. `hooks.on_epoch(i,
  epochs_done, acc, loss, states)` runs for each epoch of seed i (`states` is
  the group after the call, so per-epoch state needs epochs_per_call=1).
  `hooks.progress` (one Progress a seed) resumes an interrupted experiment;
  every `checkpoint_every` epochs (if not finished) `hooks.on_checkpoint(states,
  keys, progress)` is called. `hooks.experiment` and `hooks.seeds` name where
  a non-finite loss happened. Returns states, keys and one TrainStats a seed.
  """
  num_seeds = keys.shape[0]
  num_batches = batches.num_batches(inputs.n, opts.batch_size, opts.last_batch,
                                    opts.drop_single)
  source = EpochSource(inputs.data, inputs.buffer_idx, inputs.n, num_batches)
  progress = ([dataclasses.replace(p) for p in hooks.progress] if hooks.progress
              else [Progress() for _ in range(num_seeds)])
  done = [p.epochs > 0 and p.converged(opts.converge_acc, opts.max_epoch) for p in progress]
  while not all(done):
    epochs = next(p.epochs for p, d in zip(progress, done) if not d)
    active = jnp.asarray([not d for d in done])
    run = _scan_epochs if opts.mode == 'scan' else _loop_epoch
    states, keys, rows, ran = run(states, keys, active, source, epochs, opts)
    for row, ran_row in zip(np.asarray(rows, np.float32).tolist(), ran):
      for i in np.flatnonzero(ran_row):
        acc, loss = row[i]
        record_epoch(progress[i], acc, loss, hooks.experiment,
                     None if hooks.seeds is None else hooks.seeds[i])
        if hooks.on_epoch is not None:
          hooks.on_epoch(i, progress[i].epochs, acc, loss, states)
        done[i] = progress[i].converged(opts.converge_acc, opts.max_epoch)
    running = [p for p, d in zip(progress, done) if not d]
    if running and checkpoint_due(running[0], opts.checkpoint_every, hooks.on_checkpoint):
      hooks.on_checkpoint(states, keys, [dataclasses.replace(p) for p in progress])
  return states, keys, [p.stats(num_batches) for p in progress]


class EpochRows(NamedTuple):
  """The group after some epochs, with the (acc, loss) rows of the epochs
  run (epochs, S, 2) and which seeds ran each (epochs, S), on the host."""
  states: Any
  keys: Any
  rows: Any
  ran: Any


def _scan_epochs(states, keys, active, source: EpochSource, epochs,
                 opts: TrainOptions) -> EpochRows:
  """Mode 'scan': one device_epochs call from epoch `epochs`."""
  cap = min(opts.epochs_per_call, EPOCHS_PER_CALL, opts.max_epoch - epochs)
  if opts.checkpoint_every:
    cap = min(cap, opts.checkpoint_every - epochs % opts.checkpoint_every)
  bounds = CallBounds(epochs, cap, device_threshold(opts.converge_acc))
  layout = Layout(opts.step, opts.batch_size, opts.block)
  done = device_epochs(states, keys, active, source, bounds, layout=layout)
  count = int(done.count)
  return EpochRows(done.states, done.keys, np.asarray(done.metrics)[:count],
                   np.asarray(done.ran)[:count])


def _loop_epoch(states, keys, active, source: EpochSource, epochs,
                opts: TrainOptions) -> EpochRows:
  """Mode 'loop': epoch `epochs` as one jitted step a batch (one row)."""
  keys, orders, step_keys = _epoch_draws(keys, active, source.buffer_idx, source.n,
                                         opts.batch_size)
  group_epoch = Epoch(source.data, orders, source.n, source.num_batches, epochs, step_keys)
  layout = Layout(opts.step, opts.batch_size)
  sums = jnp.zeros((keys.shape[0], 2), jnp.float32)
  for b in range(source.num_batches):
    states, sums = group_loop_step(states, sums, active, group_epoch, b, layout=layout)
  return EpochRows(states, keys, running_metrics(sums, source.num_batches)[None],
                   np.asarray(active)[None])


def record_epoch(progress, acc, loss, experiment, seed=None):
  """Add one epoch's running figures; a NaN/inf loss stops the run loudly."""
  progress.epochs += 1
  if not math.isfinite(loss):
    where = '' if seed is None else f'seed {seed}, '
    raise NonFiniteLoss(
        f'non-finite training loss ({loss}) at {where}experiment {experiment}, '
        f'epoch {progress.epochs}', seed)
  progress.acc_sum += acc
  progress.loss_sum += loss
  progress.last_acc = acc


def checkpoint_due(progress, every, on_checkpoint) -> bool:
  if signals.stop_requested():  # SIGTERM: save at this epoch boundary and stop
    return on_checkpoint is not None
  return bool(on_checkpoint is not None and every and progress.epochs % every == 0)


def create_state(model, tx, key, input_shape, keep_init: bool) -> TrainState:
  """Fresh params, BatchNorm statistics and optimizer state (compiled once)."""
  return _state_initializer(model, tx, tuple(input_shape), keep_init)(key)


@functools.lru_cache(maxsize=None)
def _state_initializer(model, tx, input_shape, keep_init):
  @jax.jit
  def init(key):
    variables = model.init(key, jnp.zeros((1,) + input_shape, jnp.float32),
                           train=False)
    params = flax.core.unfreeze(variables['params'])
    return TrainState.create(
        apply_fn=model.apply, params=params, tx=tx,
        batch_stats=flax.core.unfreeze(variables.get('batch_stats', {})),
        init_params=params if keep_init else None)
  return init
