"""Optimizers as optax chains, with PyTorch's SGD semantics.

PyTorch SGD: g += wd * w; buf = m * buf + g; w -= lr * buf. That is exactly
add_decayed_weights -> trace -> scale_by_learning_rate. The learning rate is
an injected hyper-parameter so schedules (SoTA recipe) can set it per step.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

SAM_EPS = 1e-12


def _sgd(learning_rate, momentum, weight_decay):
  return optax.chain(
      optax.add_decayed_weights(weight_decay),
      optax.trace(decay=momentum, nesterov=False),
      optax.scale_by_learning_rate(learning_rate))


def sgd(learning_rate: float, momentum: float = 0.9, weight_decay: float = 0.0):
  """PyTorch-style SGD whose learning rate lives in the optimizer state."""
  return optax.inject_hyperparams(_sgd)(
      learning_rate=learning_rate, momentum=momentum, weight_decay=weight_decay)


def sam_ascent(rho: float) -> optax.GradientTransformation:
  """SAM's ascent step e = rho * g / (||g||_2 + 1e-12), global norm."""
  def scale(updates, params=None):
    del params
    factor = rho / (optax.tree.norm(updates) + SAM_EPS)  # was optax.global_norm (deprecated)
    return jax.tree.map(lambda g: g * factor, updates)
  return optax.stateless(scale)


def set_learning_rate(opt_state, learning_rate):
  """Opt state with a new learning rate (for per-step schedules)."""
  hyper = dict(opt_state.hyperparams)
  hyper['learning_rate'] = jnp.asarray(learning_rate, jnp.float32)
  return opt_state._replace(hyperparams=hyper)
