"""Neuron recycling: ReDo's dormant units and Continual Backprop's least useful ones.

A sibling of `dash_jax.dash`: pure functions on linen parameter dicts, usable
in any training loop. A hidden unit is one output channel of a Dense or Conv
layer (`UnitLayer.incoming`), seen after its BatchNorm (if any) and a ReLU;
its outgoing weights are the next layer's kernel slice that reads it.

  activity = unit_activity(model.apply, variables, x, layers)  # mean |act| per unit
  masks = redo_masks(activity, tau)                          # ReDo: dormant units
  masks = cbp_masks(cbp_utilities(activity, params, layers), counts)  # CBP
  params, stats, opt_state = recycle(params, stats, opt_state, fresh, layers, masks)

Linen only: `unit_activity` reads activations through linen's
`capture_intermediates`, and `recycle` rewrites nested param dicts. An NNX
model would need its own activation hook (nnx.Module.sow) and an
nnx.State round trip; that does not fit without contortion, so it is left out.

ReDo: Sokar, Agarwal, Castro & Evci, "The Dormant Neuron Phenomenon in Deep
Reinforcement Learning", ICML 2023 (code: google/dopamine, labs/redo).
Continual Backprop: Dohare et al., "Loss of plasticity in deep continual
learning", Nature 2024 (code: shibhansh/loss-of-plasticity).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = ['UnitLayer', 'unit_activity', 'redo_scores', 'redo_masks', 'outgoing_magnitude',
           'cbp_utilities', 'cbp_count', 'cbp_masks', 'lowest', 'recycle']

SCORE_EPS = 1e-9  # ReDo's guard in the layer-mean normalisation


@dataclasses.dataclass(frozen=True)
class UnitLayer:
  """One layer of hidden units, as module paths in the parameter tree.

  incoming: the Dense/Conv whose output channels are the units (kernel
  (..., in, units)); norm: the BatchNorm applied to them, or None; outgoing:
  the next Dense/Conv reading them (kernel (..., units, out)). A unit's
  activation is ReLU of the norm's output (of the incoming layer's without one).
  """
  incoming: tuple[str, ...]
  norm: tuple[str, ...] | None
  outgoing: tuple[str, ...]

  @property
  def measured(self) -> tuple[str, ...]:
    return self.norm or self.incoming


def _get(tree, path):
  for name in path:
    tree = tree[name]
  return tree


def _set(tree, path, value):
  """A copy of nested dict `tree` with `path` replaced by `value`."""
  if not path:
    return value
  return {**tree, path[0]: _set(tree[path[0]], path[1:], value)}


def unit_activity(apply_fn, variables, x, layers: Sequence[UnitLayer]) -> list:
  """Per layer, each unit's mean |activation| over batch `x` (and over
  spatial positions for a conv channel), the model in evaluation mode:
  ReLU of the captured output of `layer.measured`."""
  wanted = {layer.measured for layer in layers}
  _, state = apply_fn(variables, x, train=False, mutable=['intermediates'],
                      capture_intermediates=lambda m, method: (
                          method == '__call__' and tuple(m.path) in wanted))
  captured = state['intermediates']
  out = []
  for layer in layers:
    h = nn.relu(_get(captured, layer.measured)['__call__'][0]).astype(jnp.float32)
    out.append(jnp.mean(jnp.abs(h), axis=tuple(range(h.ndim - 1))))
  return out


def redo_scores(activity) -> list:
  """ReDo's score: each unit's mean |activation| over its layer's average."""
  return [a / (jnp.mean(a) + SCORE_EPS) for a in activity]


def redo_masks(activity, tau: float) -> list:
  """Dormant units, score <= tau (the authors' test). tau = 0 recycles
  nothing here (the authors' code would still take units with score exactly
  0): a sweep's tau = 0 is ReDo switched off."""
  if tau <= 0:
    return [jnp.zeros(a.shape, bool) for a in activity]
  return [s <= tau for s in redo_scores(activity)]


def outgoing_magnitude(params, layers: Sequence[UnitLayer]) -> list:
  """Per layer, each unit's summed |outgoing weight| (over the next layer's
  outputs and, for a conv, its kernel window)."""
  out = []
  for layer in layers:
    w = jnp.abs(_get(params, layer.outgoing)['kernel'])
    axes = tuple(i for i in range(w.ndim) if i != w.ndim - 2)
    out.append(jnp.sum(w, axis=axes))
  return out


def cbp_utilities(activity, params, layers: Sequence[UnitLayer]) -> list:
  """Continual Backprop's contribution utility: mean |activation| x summed
  |outgoing weights|. (The authors average the outgoing weights; a layer's
  ranking is the same.)"""
  return [a * m for a, m in zip(activity, outgoing_magnitude(params, layers))]


def cbp_count(num_units: int, steps, rate: float, maturity: int):
  """Units of a layer to replace after `steps` SGD steps at `rate` per unit
  per step: floor(rate * num_units * steps), none while the units are no
  older than `maturity` steps, at most the layer."""
  steps = jnp.asarray(steps, jnp.float32)
  count = jnp.floor(rate * num_units * steps + 1e-4)  # 1e-4: float32 products of exact counts
  return jnp.where(steps > maturity, jnp.minimum(count, num_units), 0).astype(jnp.int32)


def lowest(values, k) -> jax.Array:
  """Mask of the k smallest entries (k may be traced; ties: lower index first)."""
  ranks = jnp.argsort(jnp.argsort(values, stable=True), stable=True)
  return ranks < k


def cbp_masks(utilities, counts) -> list:
  """The lowest-utility units of each layer, counts[i] of layer i."""
  return [lowest(u, k) for u, k in zip(utilities, counts)]


def _zero_where(tree, touched):
  """Every subtree of `tree` shaped like the params (SGD momentum, Adam's
  moments) zeroed where `touched` is set."""
  treedef = jax.tree.structure(touched)

  def like_params(node):
    return isinstance(node, dict) and jax.tree.structure(node) == treedef

  def fix(node):
    if not like_params(node):
      return node
    return jax.tree.map(lambda x, t: jnp.where(t, jnp.zeros_like(x), x), node, touched)
  return jax.tree.map(fix, tree, is_leaf=like_params)


def _mark(touched, path, marks):
  """`touched` with the module at `path` also marked where `marks` are set."""
  old = _get(touched, path)
  return _set(touched, path, {**old, **{k: old[k] | m for k, m in marks.items()}})


def _recycle_incoming(params, stats, touched, fresh, layer, mask):
  """A layer's incoming side: kernel slice fresh, bias 0, its BatchNorm reset."""
  inc = _get(params, layer.incoming)
  new = {'kernel': jnp.where(mask, _get(fresh, layer.incoming)['kernel'], inc['kernel'])}
  if 'bias' in inc:
    new['bias'] = jnp.where(mask, 0.0, inc['bias'])
  params = _set(params, layer.incoming, {**inc, **new})
  touched = _mark(touched, layer.incoming, {k: mask for k in new})
  if layer.norm is not None:
    norm = _get(params, layer.norm)
    params = _set(params, layer.norm, {'scale': jnp.where(mask, 1.0, norm['scale']),
                                       'bias': jnp.where(mask, 0.0, norm['bias'])})
    touched = _mark(touched, layer.norm, {'scale': mask, 'bias': mask})
    if stats and layer.norm[0] in stats:
      running = _get(stats, layer.norm)
      stats = _set(stats, layer.norm, {'mean': jnp.where(mask, 0.0, running['mean']),
                                       'var': jnp.where(mask, 1.0, running['var'])})
  return params, stats, touched


def _recycle_outgoing(params, touched, layer, mask):
  """A layer's outgoing side: the next layer's kernel slice reading it, 0."""
  out = _get(params, layer.outgoing)
  rows = mask[:, None]
  params = _set(params, layer.outgoing, {**out, 'kernel': jnp.where(rows, 0.0, out['kernel'])})
  return params, _mark(touched, layer.outgoing, {'kernel': rows})


def recycle(params, batch_stats, opt_state, fresh_params, layers: Sequence[UnitLayer], masks):
  """Re-initialise the units set in `masks` (one boolean vector a layer).

  Per recycled unit: incoming kernel slice from `fresh_params` (a fresh
  model's draw), incoming bias 0; its BatchNorm scale 1, bias 0, running
  mean 0, variance 1; outgoing kernel slice 0 (the new unit starts with no
  effect on the output); every optimizer-state entry of those weights (any
  subtree of `opt_state` shaped like `params`, e.g. SGD momentum) 0.
  Nothing else changes. Returns (params, batch_stats, opt_state).
  """
  touched = jax.tree.map(lambda p: jnp.zeros(p.shape, bool), params)
  for layer, mask in zip(layers, masks):  # incoming sides first, as the authors' code
    params, batch_stats, touched = _recycle_incoming(params, batch_stats, touched,
                                                     fresh_params, layer, mask)
  for layer, mask in zip(layers, masks):  # so a unit fed by a recycled one reads 0 from it
    params, touched = _recycle_outgoing(params, touched, layer, mask)
  return params, batch_stats, _zero_where(opt_state, touched)
