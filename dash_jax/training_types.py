"""Training types: what happens to the train state between experiments.

Each is a pure function `(state, ctx) -> state`, run before an experiment
(j >= 2) or after each one, or a loss term (l2_init). A training type names
its label and builds its own typed hyper-parameters from a run's field values; adding
one is its functions and one registry line.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from dash_jax import dash as dash_lib
from dash_jax import recycle


@dataclasses.dataclass(frozen=True)
class Context:
  """What an intervention may use, supplied by the experiment loop."""
  key: jax.Array  # fresh for this call
  experiment: int  # 1-based index of the experiment just run / about to run
  hparams: Any  # the training type's own, from TrainingType.hparams
  fresh_state: Callable[[jax.Array], Any]  # key -> brand-new TrainState
  # (state, alpha) -> EMA of negative gradients over the experiment's data
  direction: Callable[[Any, float], Any]
  head: tuple  # top-level param names of the classifier head
  # (key, {head name: params}) -> re-drawn head; None = the model's own init
  head_init: Callable | None = None
  # state -> each hidden unit's mean |activation| over the experiment's data
  # (train.buffer_activity), one vector per layer of `units`
  activity: Callable | None = None
  units: tuple = ()  # the model's recycle.UnitLayers
  steps: Any = 0  # SGD steps of the experiment trained last (0 before the first)


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
  if ctx.head_init is None:
    fresh = ctx.fresh_state(ctx.key).params
    params.update({name: fresh[name] for name in ctx.head})
  else:
    params.update(ctx.head_init(ctx.key, {name: params[name] for name in ctx.head}))
  return state.replace(params=params)


def _map_layers(params, fn):
  """Apply fn(leaf) to kernel/bias of modules holding a `kernel` (dash.role),
  in insertion order (the order random keys are handed out)."""
  out = {}
  for name, value in params.items():
    if isinstance(value, dict):
      out[name] = _map_layers(value, fn)
    elif dash_lib.role(name, params) in dash_lib.LAYER_ROLES:
      out[name] = fn(value)
    else:
      out[name] = value
  return out


@dataclasses.dataclass(frozen=True)
class ShrinkPerturb:
  lam: float
  sigma: float

  @classmethod
  def from_fields(cls, fields):
    return cls(fields['sp_lambda'], fields['sp_sigma'])


def shrink_perturb(state, ctx):
  """Ash & Adams: w <- lambda w + N(0, sigma^2) on conv/linear weights and
  biases; normalisation layers untouched; optimizer state kept."""
  lam, sigma = ctx.hparams.lam, ctx.hparams.sigma
  leaves = []
  _map_layers(state.params, lambda w: leaves.append(w) or w)
  keys = iter(jax.random.split(ctx.key, max(len(leaves), 1)))
  params = _map_layers(state.params, lambda w: lam * w + sigma *
                       jax.random.normal(next(keys), w.shape, w.dtype))
  return state.replace(params=params)


@dataclasses.dataclass(frozen=True)
class Dash:
  lam: float  # shrink floor: scale = clip(cos, lam, 1)
  alpha: float  # EMA weight of the newest batch's gradient
  per: str  # 'kernel' (original code) or 'neuron' (paper text)

  @classmethod
  def from_fields(cls, fields):
    return cls(fields['dash_lambda'], fields['dash_alpha'], fields['dash_per'])


_shrink_jit = jax.jit(dash_lib.shrink, static_argnames='per')


def dash(state, ctx):
  """Shrink by alignment with the full-data direction, then train warm."""
  hp = ctx.hparams
  params = _shrink_jit(state.params, ctx.direction(state, hp.alpha), hp.lam, per=hp.per)
  return state.replace(params=params)


# ---------------------------------------------------- neuron recycling


def _recycled(state, ctx, masks):
  """`state` with the masked units re-initialised (recycle.recycle): incoming
  weights as a fresh model draws them, outgoing 0, their momentum 0."""
  fresh = ctx.fresh_state(ctx.key).params
  params, stats, opt_state = recycle.recycle(state.params, state.batch_stats, state.opt_state,
                                             fresh, ctx.units, masks)
  return state.replace(params=params, batch_stats=stats, opt_state=opt_state)


@dataclasses.dataclass(frozen=True)
class Redo:
  tau: float  # a unit is dormant when its score <= tau; 0 = off

  @classmethod
  def from_fields(cls, fields):
    return cls(fields['redo_tau'])

  def active(self) -> bool:
    return self.tau > 0


def redo(state, ctx):
  """ReDo (Sokar et al. 2023): recycle the units whose mean |activation| over
  the experiment's data, relative to their layer's mean, is <= tau."""
  return _recycled(state, ctx, recycle.redo_masks(ctx.activity(state), ctx.hparams.tau))


@dataclasses.dataclass(frozen=True)
class Cbp:
  rate: float  # units replaced per unit per SGD step; 0 = off
  maturity: int  # steps a unit must have trained before it may be replaced

  @classmethod
  def from_fields(cls, fields):
    return cls(fields['cbp_replacement_rate'], fields['cbp_maturity_threshold'])

  def active(self) -> bool:
    return self.rate > 0


def cbp(state, ctx):
  """Continual Backprop (Dohare et al. 2024), once between experiments:
  replace, per layer, the floor(rate x units x steps) mature units of lowest
  contribution utility, the steps being those of the experiment just run."""
  hp = ctx.hparams
  utilities = recycle.cbp_utilities(ctx.activity(state), state.params, ctx.units)
  counts = [recycle.cbp_count(u.shape[0], ctx.steps, hp.rate, hp.maturity) for u in utilities]
  return _recycled(state, ctx, recycle.cbp_masks(utilities, counts))


# ------------------------------------------------------------- l2_init


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

  @classmethod
  def from_fields(cls, fields):
    return cls(fields['l2_init_lambda'], fields['l2_init_form'])

  def __call__(self, params, init):
    if self.form == 'sum_norm_sq':  # PyTorch's `module.weight`s: kernels, norm scales
      roles = jax.tree.leaves(dash_lib.param_roles(params))
      pairs = zip(roles, jax.tree.leaves(params), jax.tree.leaves(init))
      norms = [_safe_norm(p - q) for r, p, q in pairs if r in dash_lib.WEIGHT_ROLES]
      return self.lam * jnp.square(sum(norms))
    pairs = zip(jax.tree.leaves(params), jax.tree.leaves(init))
    return self.lam * sum(jnp.sum(jnp.square(p - q)) for p, q in pairs)


def _no_hparams(fields):
  del fields


def _always(hparams) -> bool:
  del hparams
  return True


@dataclasses.dataclass(frozen=True)
class TrainingType:
  label: str  # as the paper's tables name it
  before: Callable | None = None  # before experiment j >= 2
  after: Callable | None = None  # after every experiment
  # a run's field values (a dict) -> this type's typed values
  hparams: Callable[[Any], Any] = _no_hparams
  regularizer: Callable[[Any], Callable] | None = None  # hparams -> loss term
  # hparams -> whether the hooks run: off (e.g. ReDo's tau = 0), the run
  # draws no key for them, so it is warm's run exactly
  active: Callable[[Any], bool] = _always

  def regularizer_for(self, hparams):
    """The loss term (params, init_params) -> scalar this type adds, or None."""
    return None if self.regularizer is None else self.regularizer(hparams)


# Paper order (tables and figures follow it).
TRAINING_TYPES: dict[str, TrainingType] = {
    'cold': TrainingType('Cold', after=cold),
    'warm': TrainingType('Warm'),
    'warm_rm': TrainingType('Warm ReM', after=warm_rm),
    'reset': TrainingType('Reset', after=reset),
    'l2_init': TrainingType('L2 Init', hparams=L2Init.from_fields,
                            regularizer=lambda hp: hp),
    'sp': TrainingType('S&P', after=shrink_perturb, hparams=ShrinkPerturb.from_fields),
    'dash': TrainingType('DASH', before=dash, hparams=Dash.from_fields),
    # Beyond the paper: neuron-recycling methods (dash_jax/recycle.py).
    'redo': TrainingType('ReDo', before=redo, hparams=Redo.from_fields,
                         active=Redo.active),
    'cbp': TrainingType('CBP', before=cbp, hparams=Cbp.from_fields, active=Cbp.active),
}


def get(name: str) -> TrainingType:
  return TRAINING_TYPES[name]
