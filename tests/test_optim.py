"""SGD with PyTorch semantics and SAM, checked by hand on a quadratic."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from dash_jax import optim, train

A = np.array([[3.0, 0.5], [0.5, 1.0]], np.float32)
W0 = np.array([1.0, -2.0], np.float32)


class QuadraticOnly(nn.Module):
  """Zero logits (so cross-entropy has no gradient) and one parameter vector."""
  @nn.compact
  def __call__(self, x, train=False, mask=None):
    w = self.param('w', lambda k: jnp.asarray(W0))
    return jnp.zeros((x.shape[0], 2)) + 0.0 * jnp.sum(w)


def quadratic(params, init):
  del init
  w = params['w']
  return 0.5 * w @ A @ w


def _state(tx):
  return train.create_state(QuadraticOnly(), tx, jax.random.PRNGKey(0), (1,), False)


def _steps(state, step_cfg, n):
  x, y, mask = jnp.zeros((4, 1)), jnp.zeros((4,), jnp.int32), jnp.ones((4,))
  for _ in range(n):
    state, _ = train.train_step(state, x, y, mask, step_cfg)
  return np.asarray(state.params['w'])


def test_sgd_momentum_weight_decay_match_pytorch():
  lr, m, wd = 0.1, 0.9, 0.01
  got = _steps(_state(optim.sgd(lr, m, wd)), train.StepConfig(regularizer=quadratic), 2)
  w, buf = W0.astype(np.float64), np.zeros(2)
  for _ in range(2):  # torch.optim.SGD: d_p = g + wd*w; buf = m*buf + d_p; w -= lr*buf
    buf = m * buf + (A @ w + wd * w)
    w = w - lr * buf
  np.testing.assert_allclose(got, w, rtol=1e-5)


def test_sam_step_matches_hand_computation():
  lr, m, wd, rho = 0.1, 0.9, 0.01, 0.05
  cfg = train.StepConfig(regularizer=quadratic, sam_rho=rho)
  got = _steps(_state(optim.sgd(lr, m, wd)), cfg, 2)
  w, buf = W0.astype(np.float64), np.zeros(2)
  for _ in range(2):
    g1 = A @ w
    e = rho * g1 / (np.linalg.norm(g1) + 1e-12)
    g2 = A @ (w + e)  # gradient at the perturbed point ...
    buf = m * buf + (g2 + wd * w)  # ... applied at the original point
    w = w - lr * buf
  np.testing.assert_allclose(got, w, rtol=1e-5)
  plain = _steps(_state(optim.sgd(lr, m, wd)), train.StepConfig(regularizer=quadratic), 2)
  assert not np.allclose(got, plain)


def test_sam_ascent_guard_on_zero_gradient():
  zero = {'w': jnp.zeros(3)}
  e, _ = optim.sam_ascent(0.1).update(zero, optim.optax.EmptyState())
  assert np.all(np.asarray(e['w']) == 0)


def test_learning_rate_is_settable_in_state():
  tx = optim.sgd(0.1)
  state = _state(tx)
  state = state.replace(opt_state=optim.set_learning_rate(state.opt_state, 0.0))
  got = _steps(state, train.StepConfig(regularizer=quadratic), 1)
  np.testing.assert_array_equal(got, W0)


def test_sam_second_pass_batchnorm_switch():
  from dash_jax import models
  model = models.MLP(num_classes=3, width=8)
  state = train.create_state(model, optim.sgd(0.1), jax.random.PRNGKey(0), (4,), False)
  x = jax.random.normal(jax.random.PRNGKey(1), (16, 4))
  y, mask = jnp.arange(16) % 3, jnp.ones(16)
  sgd, _ = train.train_step(state, x, y, mask, train.StepConfig())
  one, _ = train.train_step(state, x, y, mask, train.StepConfig(sam_rho=0.5, sam_bn_second_pass=False))
  two, _ = train.train_step(state, x, y, mask, train.StepConfig(sam_rho=0.5, sam_bn_second_pass=True))
  # without the switch, BN statistics move once (first pass), as in plain SGD
  for a, b in zip(jax.tree.leaves(one.batch_stats), jax.tree.leaves(sgd.batch_stats)):
    np.testing.assert_allclose(a, b, rtol=1e-6)
  # with it (the original code), the perturbed pass moves them a second time
  assert not np.allclose(two.batch_stats['bn1']['mean'], one.batch_stats['bn1']['mean'])
  assert not np.allclose(two.params['fc1']['kernel'], sgd.params['fc1']['kernel'])
