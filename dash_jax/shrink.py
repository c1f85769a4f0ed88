"""DASH: shrink each neuron by how badly it aligns with the full-data direction.

Neurons aligned with the negative gradient on all data carry features worth
keeping; the rest mostly memorised noise, so they are shrunk toward zero and
training can learn again (Shin et al., NeurIPS 2024).
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

COS_EPS = 1e-8  # torch.nn.functional.cosine_similarity's guard


def cosine(a, b, axes):
  """dot / max(|a| |b|, 1e-8) over `axes`, kept for broadcasting."""
  dot = jnp.sum(a * b, axis=axes, keepdims=True)
  norms = jnp.sqrt(jnp.sum(a * a, axis=axes, keepdims=True) *
                   jnp.sum(b * b, axis=axes, keepdims=True))
  return dot / jnp.maximum(norms, COS_EPS)


def kernel_axes(ndim: int, per: str) -> tuple[int, ...]:
  """Axes one cosine is taken over, for a Flax kernel (..., in, out).

  Dense (in, out): one cosine per output unit -> axis 0. Conv (*spatial, in,
  out): per='kernel' (original code) -> one per (in, out) pair over the
  spatial axes; per='neuron' (paper text) -> one per output channel.
  """
  if ndim == 2:
    return (0,)
  if per == 'kernel':
    return tuple(range(ndim - 2))
  if per == 'neuron':
    return tuple(range(ndim - 1))
  raise ValueError(f"per must be 'kernel' or 'neuron', got {per!r}")


def shrink_factors(params, direction, lam, per: str = 'kernel'):
  """Tree like `params` of the scale each entry is multiplied by (1 = kept)."""
  def layer(p, d):
    out = {}
    for name, value in p.items():
      if isinstance(value, dict):
        out[name] = layer(value, d[name])
      elif 'kernel' in p and name == 'kernel':
        out[name] = jnp.clip(cosine(value, d[name], kernel_axes(value.ndim, per)), lam, 1.0)
      elif 'kernel' in p and name == 'bias':
        out[name] = jnp.clip(cosine(value, d[name], None), lam, 1.0)
      else:
        out[name] = jnp.ones((1,) * jnp.ndim(value), jnp.result_type(value))
    return out
  return layer(_as_dict(params), _as_dict(direction))


def dash_shrink(params, direction, lam, per: str = 'kernel'):
  """Params with every kernel slice (and each bias) scaled by clip(cos, lam, 1).

  `direction` is the negative full-data gradient, a tree like `params`.
  Module dicts without a `kernel` (BatchNorm/LayerNorm) come back unchanged.
  """
  factors = shrink_factors(params, direction, lam, per)
  return jax.tree.map(lambda p, s: p * s, _as_dict(params), factors)


dash_shrink_jit = jax.jit(dash_shrink, static_argnames='per')


def _as_dict(tree):
  """FrozenDict / dict -> plain nested dict (structure preserved)."""
  if hasattr(tree, 'unfreeze'):
    tree = tree.unfreeze()
  if isinstance(tree, dict):
    return {k: _as_dict(v) for k, v in tree.items()}
  return tree


def ema_update(g, grads, alpha):
  """One step of the direction's EMA: g <- (1 - alpha) g - alpha * grads."""
  return jax.tree.map(lambda a, b: (1.0 - alpha) * a - alpha * b, g, grads)


def ema_direction(grad_fn: Callable[[Any, Any], Any], params, batches, alpha):
  """g <- (1 - alpha) g + alpha * (-grad) over `batches` (oldest first).

  `batches` is indexed by a traced integer through `batches(i)`, run for
  `num` steps inside one `fori_loop`, so memory is one accumulator tree.
  """
  get_batch, num = batches

  def body(i, g):
    return ema_update(g, grad_fn(params, get_batch(i)), alpha)

  zeros = jax.tree.map(jnp.zeros_like, params)
  return jax.lax.fori_loop(0, num, body, zeros)
