"""DASH: shrink each neuron by how badly it aligns with the full-data direction.

Neurons aligned with the negative gradient on all data carry features worth
keeping; the rest mostly memorised noise, so they are shrunk toward zero and
training can learn again (Shin et al., NeurIPS 2024).

Public API, for any linen or NNX model and any training loop:

  g = direction(loss_fn, params, batches, alpha)   # EMA of -grad over batches
  params = shrink(params, g, lam, per)             # linen dict / FrozenDict / nnx.State
  apply(model, loss_fn, batches, lam, alpha, per)  # NNX: both, in place

A module holding a `kernel` is a layer (Dense, Conv): its kernel and bias are
shrunk; everything else (norm layers, embeddings) is left alone. That rule
lives in `role` / `param_roles`, shared with Shrink & Perturb, l2_init and
the diagnostics. Nothing here knows about the warm-start protocol.
"""
from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from dash_jax.errors import UserError

__all__ = ['role', 'param_roles', 'cosine', 'kernel_axes', 'shrink_factors', 'shrink',
           'shrink_checked', 'check_finite',
           'dash_shrink', 'ema_update', 'ema_direction', 'direction', 'apply']

COS_EPS = 1e-8  # torch.nn.functional.cosine_similarity's guard
PERS = ('kernel', 'neuron')
WEIGHT_ROLES = ('kernel', 'norm_scale')  # PyTorch's `module.weight`
LAYER_ROLES = ('kernel', 'bias')  # what DASH and Shrink & Perturb touch


# ------------------------------------------------------------------ roles


def role(name, siblings) -> str:
  """What a parameter is, from its name and its module's parameter names.

  'kernel' (Dense/Conv weight), 'bias' (a bias beside a kernel),
  'norm_scale' / 'norm_bias' (normalisation layers), or 'other'.
  """
  if name == 'kernel':
    return 'kernel'
  if name == 'bias' and 'kernel' in siblings:
    return 'bias'
  if name == 'scale':
    return 'norm_scale'
  if name == 'bias' and 'scale' in siblings:
    return 'norm_bias'
  return 'other'


def _key_name(key):
  for attr in ('key', 'name', 'idx'):
    if hasattr(key, attr):
      return getattr(key, attr)
  return str(key)


def _is_variable(x) -> bool:
  return isinstance(x, nnx.Variable)


def _leaf_paths(tree) -> list[tuple]:
  """Names path of every array leaf, in jax.tree.leaves order; an nnx
  Variable's path stops at the Variable (so a linen dict and an nnx.State
  of the same model give the same paths)."""
  out = []
  for path, node in jax.tree_util.tree_flatten_with_path(tree, is_leaf=_is_variable)[0]:
    names = tuple(_key_name(k) for k in path)
    out.extend([names] * len(jax.tree.leaves(node)))
  return out


def _roles_of_paths(paths) -> list[str]:
  siblings: dict[tuple, set] = {}
  for p in paths:
    siblings.setdefault(p[:-1], set()).add(p[-1])
  return [role(p[-1], siblings[p[:-1]]) if p else 'other' for p in paths]


def param_roles(params):
  """Tree like `params` whose leaves are role() strings."""
  roles = _roles_of_paths(_leaf_paths(params))
  return jax.tree.unflatten(jax.tree.structure(params), roles)


# ----------------------------------------------------------------- shrink


def cosine(a, b, axes):
  """torch.nn.functional.cosine_similarity (PyTorch >= 1.12) over `axes`,
  kept for broadcasting: (a / max(|a|, eps)) . (b / max(|b|, eps)).

  Each vector is normalised on its own, so two tiny vectors still give +-1
  (the older dot / max(|a||b|, eps) shrinks them toward 0).
  """
  def unit(x):
    norm = jnp.sqrt(jnp.sum(x * x, axis=axes, keepdims=True))
    return x / jnp.maximum(norm, COS_EPS)
  return jnp.sum(unit(a) * unit(b), axis=axes, keepdims=True)


def kernel_axes(ndim: int, per: str) -> tuple[int, ...]:
  """Axes one cosine is taken over, for a Flax kernel (..., in, out).

  Dense (in, out): one cosine per output unit -> axis 0. Conv (*spatial, in,
  out): per='kernel' (original code) -> one per (in, out) pair over the
  spatial axes; per='neuron' (paper text) -> one per output channel.
  """
  _check_per(per)
  if ndim == 2:
    return (0,)
  if per == 'kernel':
    return tuple(range(ndim - 2))
  return tuple(range(ndim - 1))


def _check_per(per):
  if per not in PERS:
    raise UserError(f"per must be 'kernel' or 'neuron', got {per!r}")


def _check_fraction(name, value):
  """0 < value <= 1 when value is concrete (under jit it is a tracer)."""
  concrete = isinstance(value, (int, float, np.number, np.ndarray)) and np.ndim(value) == 0
  if concrete and not 0.0 < float(value) <= 1.0:
    raise UserError(f'{name} must be in (0, 1], got {value!r}')


def _fmt(path) -> str:
  return '/'.join(str(k) for k in path) or '<root>'


def _aligned_direction(params, direction) -> list:
  """Leaves of `direction` in params' leaf order, matched by path; a missing,
  extra or differently shaped entry is a UserError naming its path."""
  pp, dp = _leaf_paths(params), _leaf_paths(direction)
  found = dict(zip(dp, jax.tree.leaves(direction)))
  out = []
  for path, p in zip(pp, jax.tree.leaves(params)):
    if path not in found:
      raise UserError(f'direction has no entry {_fmt(path)} of params; compute '
                      'the direction with these params')
    d = found[path]
    if jnp.shape(d) != jnp.shape(p):
      raise UserError(f'direction {_fmt(path)} has shape {jnp.shape(d)}, params '
                      f'{jnp.shape(p)}; compute the direction with these params')
    out.append(d)
  known = set(pp)
  extra = [path for path in dp if path not in known]
  if extra:
    raise UserError(f'direction has {_fmt(extra[0])}, which params lack; compute '
                    'the direction with these params')
  return out


def shrink_factors(params, direction, lam=0.3, per: str = 'kernel'):
  """Tree like `params` of the scale each entry is multiplied by (1 = kept)."""
  _check_per(per)
  _check_fraction('lam', lam)
  leaves = jax.tree.leaves(params)
  roles = _roles_of_paths(_leaf_paths(params))

  def factor(r, p, d):
    if r == 'kernel':
      return jnp.clip(cosine(p, d, kernel_axes(jnp.ndim(p), per)), lam, 1.0)
    if r == 'bias':
      return jnp.clip(cosine(p, d, None), lam, 1.0)
    return jnp.ones((1,) * jnp.ndim(p), jnp.result_type(p))

  factors = [factor(r, p, d) for r, p, d in
             zip(roles, leaves, _aligned_direction(params, direction))]
  return jax.tree.unflatten(jax.tree.structure(params), factors)


def _shrink(params, direction, lam, per):
  factors = shrink_factors(params, direction, lam, per)
  return jax.tree.map(lambda p, s: p * s, params, factors)


def _finite(leaves) -> jax.Array:
  """One bool per leaf: all its entries finite (an empty tree: none)."""
  return jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]) if leaves else (
      jnp.ones((0,), bool))


def shrink_checked(params, direction, lam=0.3, per: str = 'kernel'):
  """(shrink(...), ok): `ok` is a bool scalar, False when `direction` or
  `params` holds a NaN or inf (the shrunk params are then not finite). For
  use under your own jit, where `shrink` cannot raise: check `ok` outside."""
  flags = _finite(_aligned_direction(params, direction) + jax.tree.leaves(params))
  return _shrink(params, direction, lam, per), jnp.all(flags)


def _traced(*trees) -> bool:
  return any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves(trees))


def shrink(params, direction, lam=0.3, per: str = 'kernel'):
  """Params with every kernel slice (and each bias) scaled by clip(cos, lam, 1).

  `direction` is the negative full-data gradient, a tree like `params`
  (from `direction()`). Dense: one cosine per output unit; Conv: per (in,
  out) pair over the spatial axes (per='kernel', the original code) or per
  output channel (per='neuron', the paper's text); a bias: one cosine for
  the whole vector; modules without a `kernel` (BatchNorm, LayerNorm) come
  back unchanged. `params` is a linen dict / FrozenDict or an nnx.State
  (e.g. from nnx.split(model, nnx.Param, ...)); the result has its type and
  structure, ready for nnx.merge / nnx.update. Jittable (`per` static).

  A NaN or inf in `direction` (or `params`) raises a UserError naming the
  first such entry, and nothing is returned: the caller's params stay as
  they were. Under the caller's own jit there is no raising; there, use
  `shrink_checked`, which returns a flag to check.
  """
  if _traced(params, direction, lam):
    return _shrink(params, direction, lam, per)
  out = _shrink(params, direction, lam, per)
  check_finite(direction, 'direction', like=params, fix='recompute it (a batch with a NaN '
               'loss or input?)')
  check_finite(params, 'params', fix='they were not finite before DASH')
  return out


def check_finite(tree, what, like=None, fix=''):
  """A UserError naming the first leaf of `tree` (in `like`'s order) that
  holds a NaN or inf; one device-to-host read of one bool per leaf."""
  leaves = _aligned_direction(like, tree) if like is not None else jax.tree.leaves(tree)
  paths = _leaf_paths(like if like is not None else tree)
  flags = np.asarray(_finite(leaves))
  if flags.all():
    return
  i = int(np.argmin(flags))
  raise UserError(f'{what} {_fmt(paths[i])} holds NaN or inf ({int((~flags).sum())} of '
                  f'{flags.size} arrays do); nothing was shrunk; {fix}')


dash_shrink = shrink  # the protocol's name (README)


# -------------------------------------------------------------- direction


def ema_update(g, grads, alpha):
  """One step of the direction's EMA: g <- (1 - alpha) g - alpha * grads."""
  return jax.tree.map(lambda a, b: (1.0 - alpha) * a - alpha * b, g, grads)


def ema_direction(grad_fn: Callable[[Any, Any], Any], params, batches, alpha):
  """g <- (1 - alpha) g + alpha * (-grad) over `batches` (oldest first).

  `batches` is (get_batch, num): batch i is get_batch(i) for a traced i, run
  for `num` steps inside one `fori_loop`, so memory is one accumulator tree.
  """
  get_batch, num = batches

  def body(i, g):
    return ema_update(g, grad_fn(params, get_batch(i)), alpha)

  zeros = jax.tree.map(jnp.zeros_like, params)
  return jax.lax.fori_loop(0, num, body, zeros)


def _scalar_loss(loss_fn, batch):
  def loss(params):
    value = loss_fn(params, batch)
    if getattr(value, 'shape', None) != ():
      got = getattr(value, 'shape', type(value).__name__)
      raise UserError(f'loss_fn must return a scalar, got {got}; reduce it '
                      '(e.g. .mean()) and return no aux outputs')
    return value
  return loss


@functools.partial(jax.jit, static_argnums=0, donate_argnums=1)
def _ema_step(loss_fn, g, params, batch, alpha):
  """One compiled program per (loss_fn, shapes): never per batch. Also
  returns [loss finite, each gradient leaf finite] (read once, at the end)."""
  loss, grads = jax.value_and_grad(_scalar_loss(loss_fn, batch))(params)
  finite = jnp.concatenate([jnp.isfinite(loss)[None], _finite(jax.tree.leaves(grads))])
  return ema_update(g, grads, alpha), finite


def direction(loss_fn: Callable[[Any, Any], Any], params, batches: Iterable,
              alpha=0.3):
  """EMA of the negative gradient over `batches`, oldest first:
  g <- (1 - alpha) g + alpha * (-grad loss_fn(params, batch)), g_0 = 0.

  `loss_fn(params, batch) -> scalar` is any JAX-traceable function (put
  BatchNorm in evaluation mode inside it, as the paper's code); `batches`
  any iterable of pytrees (list, generator, tfds/grain iterator), read once.
  One compiled step per loss_fn and batch shape (pass the same function
  object each round, not a new lambda, to reuse it); memory is one
  accumulator like `params`. Returns a tree like `params`.

  A batch whose loss or gradient is NaN or inf (a NaN input, a diverged
  loss) raises a UserError naming the first such batch (counting from 0)
  and parameter, instead of returning a direction that would turn every
  shrunk parameter into NaN. The check is read once, after the last batch.
  """
  _check_fraction('alpha', alpha)
  try:
    hash(loss_fn)
  except TypeError:
    raise UserError(f'loss_fn must be hashable (a function, not a {type(loss_fn).__name__}); '
                    'wrap it in a def') from None
  g, count, flags = jax.tree.map(jnp.zeros_like, params), 0, []
  for batch in batches:
    g, finite = _ema_step(loss_fn, g, params, batch, alpha)
    flags.append(finite)
    count += 1
  if count == 0:
    raise UserError('batches is empty; pass the data seen so far (at least one batch)')
  flags = np.asarray(jnp.stack(flags))
  if not flags.all():
    b = int(np.argmin(flags.all(axis=1)))
    parts = [] if flags[b, 0] else ['its loss']
    if not flags[b, 1:].all():
      parts.append(f'the gradient of {_fmt(_leaf_paths(params)[int(np.argmin(flags[b, 1:]))])}')
    where = ' and '.join(parts)
    raise UserError(f'batch {b} (counting from 0) of the {count} given makes {where} NaN '
                    f'or inf; no direction returned; check that batch for NaN/inf inputs or '
                    f'labels out of range, or the params for a diverged model')
  return g


# -------------------------------------------------------------------- NNX


@dataclasses.dataclass(frozen=True)
class _ModelLoss:
  """(params, (rest, batch)) -> loss_fn(model, batch); hashable, so repeated
  apply() calls on one model reuse the compiled step."""
  loss_fn: Callable
  graphdef: Any

  def __call__(self, params, rest_and_batch):
    rest, batch = rest_and_batch
    return self.loss_fn(nnx.merge(self.graphdef, params, rest), batch)


def apply(model, loss_fn: Callable[[Any, Any], Any], batches: Iterable, lam=0.3,
          alpha=0.3, per: str = 'kernel'):
  """DASH on an NNX model, in place: direction over `batches`, then shrink
  of its nnx.Param leaves (nnx.update).

  `loss_fn(model, batch) -> scalar` gets a copy of `model` carrying the
  params being differentiated; whatever it changes on that copy (BatchNorm
  statistics, RNG counts) is thrown away. Call model.eval() first to use
  BatchNorm's running statistics, as the paper's code does. A NaN or inf
  loss or gradient raises a UserError (see `direction`) and leaves the
  model as it was.
  """
  _check_per(per)
  _check_fraction('lam', lam)
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  # direction() and shrink() raise on NaN/inf before the model is touched
  g = direction(_ModelLoss(loss_fn, graphdef), params,
                ((rest, batch) for batch in batches), alpha)
  nnx.update(model, shrink(params, g, lam, per))
