"""The original code's extra measurements (config.diagnostics): how much a
warm model remembers and how hard it is pushed when new data arrives.

Per experiment j (chunks 1..j; "prev" = chunks 1..j-1, "new" = chunk j):
- prev_acc: accuracy on the previous experiment's data; prev_acc[e] after e
  epochs of this experiment, e = 0..PREV_ACC_EPOCHS (e = 0: before training,
  after the 'before' intervention), as the original's get_prev_metric (j >= 2).
- grad_norm_{prev,all,new}: at epoch 0, the global L2 norm over conv/dense
  kernels of the gradient of the mean cross-entropy on that data (j >= 2).
- param_norm_fc / param_norm_conv: mean |w| of dense kernels; sum |w| of conv
  kernels over (in * out) channels, as the original's get_*_param_norm, and
  param_norm_l2: the global L2 norm of all kernels (after training).
- dist_from_start: mean over kernels of ||w - w_start|| / ||w_start||, where
  w_start is where this experiment's training began; dist_from_prev: the same
  against the previous experiment's trained weights (j >= 2).

Differences from the original: BatchNorm is in evaluation mode for the
gradients (the original ran them in training mode, which also moved the
running statistics, so measuring changed training); a gradient is that of the
mean loss over the set (the original summed per-batch mean gradients, so its
value grew with the number of batches); prev_acc is over examples, not a mean
of batch accuracies. Measuring never changes training: the numbers of a run
are the same with diagnostics on or off. A run resumed from a checkpoint
lacks the values that need what it did before the restart (epoch 0 of an
interrupted experiment, the previous experiment's weights).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax

from dash_jax import dash, train

PREV_ACC_EPOCHS = 5  # prev_acc before epochs 0..5, as the original


def _batch(data, buffer_idx, start, stop, b, batch_size):
  """Batch b of buffer positions [start, stop), padded and masked."""
  pos = start + b * batch_size + jnp.arange(batch_size)
  mask = (pos < stop).astype(jnp.float32)
  idx = buffer_idx[jnp.minimum(pos, stop - 1)]
  x = train.normalise(data['train_x'][idx], data['mean'], data['std'])
  return x, data['train_y'][idx], mask


def _num_batches(start, stop, batch_size):
  return (stop - start + batch_size - 1) // batch_size


@functools.partial(jax.jit, static_argnames='batch_size')
def buffer_accuracy(state, data, buffer_idx, start, stop, batch_size):
  """Accuracy (evaluation mode) on buffer positions [start, stop)."""
  def body(b, sums):
    x, y, mask = _batch(data, buffer_idx, start, stop, b, batch_size)
    return sums + train.eval_step(state, x, y, mask)
  sums = jax.lax.fori_loop(0, _num_batches(start, stop, batch_size), body,
                           jnp.zeros((2,), jnp.float32))
  return sums[0] / (stop - start)


def kernels(tree) -> list:
  """Conv and dense weights (not biases, not BatchNorm), in tree order."""
  roles = jax.tree.leaves(dash.param_roles(tree))
  return [v for r, v in zip(roles, jax.tree.leaves(tree)) if r == 'kernel']


def global_norm(arrays):
  return jnp.sqrt(sum(jnp.sum(jnp.square(a)) for a in arrays))


@functools.partial(jax.jit, static_argnames='batch_size')
def buffer_grad_norm(state, data, buffer_idx, start, stop, batch_size):
  """||d mean CE / d kernels|| on buffer positions [start, stop); BatchNorm
  in evaluation mode, no regulariser."""
  def summed_loss(params, x, y, mask):
    logits, _ = train.forward(state, params, state.batch_stats, x, False)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, y)
    return jnp.sum(ce * mask)

  def body(b, g):
    x, y, mask = _batch(data, buffer_idx, start, stop, b, batch_size)
    return jax.tree.map(jnp.add, g, jax.grad(summed_loss)(state.params, x, y, mask))

  zeros = jax.tree.map(jnp.zeros_like, state.params)
  g = jax.lax.fori_loop(0, _num_batches(start, stop, batch_size), body, zeros)
  return global_norm(kernels(g)) / (stop - start)


@jax.jit
def param_norms(params) -> dict:
  ks = kernels(params)
  out = {'param_norm_l2': global_norm(ks)}
  for name, ndim in (('param_norm_fc', 2), ('param_norm_conv', 4)):
    sel = [k for k in ks if k.ndim == ndim]
    if sel:  # channels = the last two axes (in, out) of either layout
      out[name] = (sum(jnp.sum(jnp.abs(k)) for k in sel) /
                   sum(k.shape[-2] * k.shape[-1] for k in sel))
  return out


@jax.jit
def relative_distance(params, reference):
  """Mean over kernels of ||w - w_ref|| / ||w_ref||."""
  pairs = zip(kernels(params), kernels(reference))
  d = [jnp.linalg.norm((w - r).ravel()) / jnp.maximum(jnp.linalg.norm(r.ravel()), 1e-12)
       for w, r in pairs]
  return jnp.mean(jnp.stack(d))


def _copy(params):
  return jax.tree.map(jnp.copy, params)  # the next train step donates state


class Diagnostics:
  """Host side: when each measurement runs, and the record it makes."""

  def __init__(self, data, buffer_idx, chunk_size, batch_size):
    self.data, self.buffer_idx = data, buffer_idx
    self.chunk_size, self.batch_size = chunk_size, batch_size
    self.prev_params = self.start_params = None
    self.record = {}

  def _acc(self, state, start, stop):
    return float(buffer_accuracy(state, self.data, self.buffer_idx, start, stop,
                                 batch_size=self.batch_size))

  def start(self, experiment, state, resumed=False):
    """Epoch 0 of experiment j: after the 'before' intervention. A run
    resumed mid-experiment has missed epoch 0: those values are left out."""
    self.experiment, self.record = experiment, {}
    self.start_params = None if resumed else _copy(state.params)
    if experiment < 2 or resumed:
      return
    cs = self.chunk_size
    prev, new = (experiment - 1) * cs, experiment * cs
    self.record['prev_acc'] = [self._acc(state, 0, prev)]
    for name, (lo, hi) in (('prev', (0, prev)), ('all', (0, new)), ('new', (prev, new))):
      self.record[f'grad_norm_{name}'] = float(buffer_grad_norm(
          state, self.data, self.buffer_idx, lo, hi, batch_size=self.batch_size))

  def epoch(self, epoch, state):
    """After `epoch` epochs of this experiment."""
    if 'prev_acc' in self.record and epoch <= PREV_ACC_EPOCHS:
      self.record['prev_acc'].append(
          self._acc(state, 0, (self.experiment - 1) * self.chunk_size))

  def end(self, state) -> dict:
    """After training, before the 'after' intervention; the record of j."""
    rec = self.record
    rec.update({k: float(v) for k, v in param_norms(state.params).items()})
    if self.start_params is not None:
      rec['dist_from_start'] = float(relative_distance(state.params, self.start_params))
    if self.prev_params is not None:
      rec['dist_from_prev'] = float(relative_distance(state.params, self.prev_params))
    self.prev_params, self.start_params = _copy(state.params), None
    return rec
