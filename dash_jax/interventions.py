"""Training types: what happens to the train state between experiments.

Each is a pure function `(state, ctx) -> state`, run before an experiment
(j >= 2) or after each one; l2_init is instead a loss term. Adding a training
type is one function and one registry line.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from dash_jax import models, shrink


@dataclasses.dataclass(frozen=True)
class Context:
  """What an intervention may use, supplied by the protocol."""
  key: jax.Array  # fresh for this call
  experiment: int  # 1-based index of the experiment just run / about to run
  config: Any
  fresh_state: Callable[[jax.Array], Any]  # key -> brand-new TrainState
  direction: Callable[[Any], Any]  # state -> negative full-data gradient
  head: tuple  # top-level param names of the classifier head


def cold(state, ctx):
  """Random re-initialisation of everything, optimizer state included."""
  return ctx.fresh_state(ctx.key)


def warm_rm(state, ctx):
  """Keep the weights, forget the momentum."""
  del ctx
  return state.replace(opt_state=state.tx.init(state.params))


def reset(state, ctx):
  """Re-initialise the classifier head only; optimizer state kept. The head
  is drawn as a fresh model draws it, unless the model spec says otherwise
  (VGG: the original's reset_parameters(), PyTorch's default init)."""
  params = dict(state.params)
  head_init = models.get(ctx.config.model).head_init
  if head_init is None:
    fresh = ctx.fresh_state(ctx.key).params
    params.update({name: fresh[name] for name in ctx.head})
  else:
    params.update(head_init(ctx.key, {name: params[name] for name in ctx.head}))
  return state.replace(params=params)


def _map_layers(params, fn):
  """Apply fn(name, leaf) to kernel/bias of modules holding a `kernel`."""
  out = {}
  for name, value in params.items():
    if isinstance(value, dict):
      out[name] = _map_layers(value, fn)
    elif 'kernel' in params and name in ('kernel', 'bias'):
      out[name] = fn(value)
    else:
      out[name] = value
  return out


def shrink_perturb(state, ctx):
  """Ash & Adams: w <- lambda w + N(0, sigma^2) on conv/linear weights and
  biases; normalisation layers untouched; optimizer state kept."""
  lam, sigma = ctx.config.sp_lambda, ctx.config.sp_sigma
  leaves = []
  _map_layers(state.params, lambda w: leaves.append(w) or w)
  keys = iter(jax.random.split(ctx.key, max(len(leaves), 1)))
  params = _map_layers(state.params, lambda w: lam * w + sigma *
                       jax.random.normal(next(keys), w.shape, w.dtype))
  return state.replace(params=params)


def dash(state, ctx):
  """Shrink by alignment with the full-data direction, then train warm."""
  params = shrink.dash_shrink_jit(state.params, ctx.direction(state),
                                  ctx.config.dash_lambda, per=ctx.config.dash_per)
  return state.replace(params=params)


# ------------------------------------------------------------- l2_init


def _is_weight(path) -> bool:
  """PyTorch `module.weight`: conv/linear kernels and norm-layer scales."""
  return getattr(path[-1], 'key', None) in ('kernel', 'scale')


def _safe_norm(x):
  """||x||_2 with gradient 0 at x = 0 (as torch), not NaN (as sqrt)."""
  sq = jnp.sum(jnp.square(x))
  positive = sq > 0
  return jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, 1.0)), 0.0)


@dataclasses.dataclass(frozen=True)
class L2Init:
  """Pull toward the initial weights; hashable so it can be compiled in.

  form='sum_norm_sq' (default, the original code): lam * (sum over weights
  of ||w - w0||_2)^2, biases excluded. form='sq_dist' (Kumar et al. 2023):
  lam * sum over all parameters of ||w - w0||^2.
  """
  lam: float
  form: str = 'sum_norm_sq'

  def __call__(self, params, init):
    pairs = zip(jax.tree_util.tree_leaves_with_path(params), jax.tree.leaves(init))
    if self.form == 'sum_norm_sq':
      norms = [_safe_norm(p - q) for (path, p), q in pairs if _is_weight(path)]
      return self.lam * jnp.square(sum(norms))
    return self.lam * sum(jnp.sum(jnp.square(p - q)) for (_, p), q in pairs)


@dataclasses.dataclass(frozen=True)
class TrainingType:
  before: Callable | None = None  # before experiment j >= 2
  after: Callable | None = None  # after every experiment
  regularized: bool = False  # adds the l2_init loss term


TRAINING_TYPES: dict[str, TrainingType] = {
    'cold': TrainingType(after=cold),
    'warm': TrainingType(),
    'warm_rm': TrainingType(after=warm_rm),
    'reset': TrainingType(after=reset),
    'l2_init': TrainingType(regularized=True),
    'sp': TrainingType(after=shrink_perturb),
    'dash': TrainingType(before=dash),
}


def regularizer(config, train_type: str):
  """The loss term a training type adds, or None."""
  if not TRAINING_TYPES[train_type].regularized:
    return None
  return L2Init(config.l2_init_lambda, config.l2_init_form)
