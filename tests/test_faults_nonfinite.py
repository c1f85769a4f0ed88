"""NaN and inf: the DASH API (shrink, direction, apply) refuses them naming
the leaf or the batch and changes nothing; a launch's non-finite loss names
its run."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from dash_jax import dash, models
from dash_jax.errors import UserError


def _mlp():
  model = models.MLP(num_classes=3, width=8, depth=2)
  variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 2, 2, 1)), train=False)
  return model, variables


def _loss_for(model, stats):
  def loss(params, batch):
    x, y = batch
    logits = model.apply({'params': params, 'batch_stats': stats}, x, train=False)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
  return loss


def _batches(n, nan_at=None, nan_label=False):
  rng = np.random.default_rng(0)
  out = []
  for i in range(n):
    x = rng.normal(size=(5, 2, 2, 1)).astype(np.float32)
    y = rng.integers(0, 3, 5).astype(np.int32)
    if i == nan_at:
      x[2, 1, 0, 0] = np.nan
    out.append((jnp.asarray(x), jnp.asarray(y)))
  return out


def test_shrink_refuses_a_nan_direction_naming_the_leaf():
  model, variables = _mlp()
  params = variables['params']
  direction = jax.tree.map(jnp.ones_like, params)
  direction['fc1']['kernel'] = direction['fc1']['kernel'].at[3, 1].set(jnp.nan)
  before = jax.tree.map(np.array, params)
  with pytest.raises(UserError, match=r'^direction fc1/kernel holds NaN or inf') as e:
    dash.shrink(params, direction, 0.3)
  assert '\n' not in str(e.value)
  jax.tree.map(np.testing.assert_array_equal, before, jax.tree.map(np.asarray, params))
  direction['fc1']['kernel'] = jnp.ones_like(params['fc1']['kernel'])
  direction['head']['bias'] = direction['head']['bias'].at[0].set(jnp.inf)
  with pytest.raises(UserError, match='direction head/bias holds NaN or inf'):
    dash.shrink(params, direction, 0.3)


def test_shrink_under_jit_keeps_its_numbers_and_shrink_checked_flags():
  _, variables = _mlp()
  params = variables['params']
  direction = jax.tree.map(lambda p: jnp.cos(p) + 0.1, params)
  eager = dash.shrink(params, direction, 0.3)
  jax.tree.map(np.testing.assert_array_equal, eager,
               jax.jit(dash.shrink, static_argnames='per')(params, direction, 0.3, per='kernel'))
  out, ok = jax.jit(dash.shrink_checked)(params, direction, 0.3)
  assert bool(ok)
  jax.tree.map(np.testing.assert_array_equal, eager, out)
  direction['fc1']['bias'] = direction['fc1']['bias'].at[0].set(jnp.nan)
  assert not bool(jax.jit(dash.shrink_checked)(params, direction, 0.3)[1])


@pytest.mark.parametrize('case', ['nan_input', 'nan_loss'])
def test_direction_refuses_a_non_finite_batch_naming_it(case):
  model, variables = _mlp()
  stats = variables['batch_stats']
  loss = _loss_for(model, stats)
  if case == 'nan_input':
    batches = _batches(4, nan_at=2)
    expected = (r'^batch 2 \(counting from 0\) of the 4 given makes its loss and the '
                r'gradient of bn1/scale NaN or inf')
  else:
    def loss(params, batch, inner=loss):  # noqa: F811 - NaN loss on one batch only
      x, _ = batch
      return inner(params, batch) + jnp.where(x[0, 0, 0, 0] > 100, jnp.nan, 0.0)
    batches = _batches(3)
    batches[1] = (batches[1][0].at[0, 0, 0, 0].set(1000.0), batches[1][1])
    expected = r'^batch 1 \(counting from 0\) of the 3 given makes its loss NaN or inf'
  with pytest.raises(UserError, match=expected) as e:
    dash.direction(loss, variables['params'], batches, alpha=0.3)
  assert '\n' not in str(e.value)


def test_direction_of_finite_batches_is_unchanged():
  model, variables = _mlp()
  loss = _loss_for(model, variables['batch_stats'])
  batches = _batches(3)
  got = dash.direction(loss, variables['params'], batches, alpha=0.4)
  g = jax.tree.map(jnp.zeros_like, variables['params'])
  for b in batches:
    grad = jax.grad(loss)(variables['params'], b)
    g = jax.tree.map(lambda a, d: 0.6 * a - 0.4 * d, g, grad)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), got, g)


class _Net(nnx.Module):
  def __init__(self, rngs):
    self.fc = nnx.Linear(4, 6, rngs=rngs)
    self.bn = nnx.BatchNorm(6, rngs=rngs)
    self.head = nnx.Linear(6, 3, rngs=rngs)

  def __call__(self, x):
    return self.head(nnx.relu(self.bn(self.fc(x.reshape((x.shape[0], -1))))))


def _nnx_loss(model, batch):
  x, y = batch
  return optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()


def test_apply_leaves_the_nnx_model_untouched_on_a_nan_input():
  model = _Net(nnx.Rngs(0))
  model.eval()
  before = jax.tree.map(np.array, nnx.to_pure_dict(nnx.state(model, nnx.Param)))
  with pytest.raises(UserError, match=r'^batch 0 \(counting from 0\) of the 2 given'):
    dash.apply(model, _nnx_loss, _batches(2, nan_at=0), lam=0.3)
  after = nnx.to_pure_dict(nnx.state(model, nnx.Param))
  jax.tree.map(np.testing.assert_array_equal, before, after)
  assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(after))
  dash.apply(model, _nnx_loss, _batches(2), lam=0.3)  # finite batches: shrinks as before
  changed = nnx.to_pure_dict(nnx.state(model, nnx.Param))
  assert not np.array_equal(before['fc']['kernel'], changed['fc']['kernel'])


@pytest.mark.slow
@pytest.mark.parametrize('vmap', [False, True])
def test_a_non_finite_loss_names_the_run(tiny_config, tmp_path, vmap):
  import dash_jax
  tiny_config.learning_rate = 1e12
  tiny_config.seeds = '1,2'
  tiny_config.vmap_seeds = vmap
  with pytest.raises(UserError) as e:
    dash_jax.run(tiny_config, str(tmp_path), lambda *a: None)
  msg = str(e.value)
  assert msg.startswith('warm-sgd-seed1: non-finite training loss'), msg
  assert '\n' not in msg
