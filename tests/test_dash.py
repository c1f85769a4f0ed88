"""dash.direction / dash.shrink / dash.apply against independent NumPy and
plain-JAX formulas, on linen trees and NNX states; misuse errors."""
import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from dash_jax import dash, models, optim, train
from dash_jax.dash import dash_shrink, shrink_factors
from dash_jax.errors import UserError

LAM = 0.3
EPS = 1e-8


class TinyConvNet(nn.Module):
  @nn.compact
  def __call__(self, x, train=False, mask=None):
    x = nn.Conv(4, (3, 3), name='conv')(x)
    x = models.batch_norm(nn.BatchNorm, train, jnp.float32, 'bn')(x, mask=models._bn_mask(mask, x))
    x = nn.relu(x).mean((1, 2))
    return nn.Dense(3, name='head')(x)


def _params(model, shape, seed=0):
  v = model.init(jax.random.PRNGKey(seed), jnp.zeros(shape), train=False)
  return jax.tree.map(np.asarray, flax.core.unfreeze(v['params']))


def _random_like(tree, seed):
  leaves, treedef = jax.tree.flatten(tree)
  keys = jax.random.split(jax.random.PRNGKey(seed), len(leaves))
  return jax.tree.unflatten(treedef, [np.asarray(jax.random.normal(k, l.shape))
                                      for k, l in zip(keys, leaves)])


def _close(a, b, rtol=1e-5, atol=1e-7):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


@pytest.fixture(scope='module')
def conv_tree():
  params = _params(TinyConvNet(), (1, 6, 6, 2))
  params['bn'] = {'scale': np.full(4, 1.5, np.float32), 'bias': np.full(4, 0.2, np.float32)}
  return params, _random_like(params, 1)


def _torch_cos(a, b):
  """torch.nn.functional.cosine_similarity (>= 1.12) of two flat vectors."""
  a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
  return float(np.dot(a / max(np.linalg.norm(a), EPS), b / max(np.linalg.norm(b), EPS)))


def _old_cos(a, b):
  a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
  return float(np.dot(a, b) / max(np.linalg.norm(a) * np.linalg.norm(b), EPS))


# ------------------------------------------------------------ the formula


def test_matches_original_per_kernel_formula(conv_tree):
  """Slice by slice in torch layout: conv (o, i) kernels, Linear rows, biases."""
  params, direction = conv_tree
  out = dash_shrink(params, direction, LAM)
  w = np.transpose(params['conv']['kernel'], (3, 2, 0, 1))  # (o, i, h, w)
  g = np.transpose(direction['conv']['kernel'], (3, 2, 0, 1))
  expected = np.stack([np.stack([w[o, i] * np.clip(_torch_cos(w[o, i], g[o, i]), LAM, 1)
                                 for i in range(2)]) for o in range(4)])
  np.testing.assert_allclose(np.transpose(out['conv']['kernel'], (3, 2, 0, 1)), expected,
                             rtol=1e-5, atol=1e-6)
  w, g = params['head']['kernel'].T, direction['head']['kernel'].T  # Linear (out, in)
  expected = np.stack([w[o] * np.clip(_torch_cos(w[o], g[o]), LAM, 1) for o in range(3)])
  np.testing.assert_allclose(out['head']['kernel'].T, expected, rtol=1e-5)
  for name in ('conv', 'head'):  # bias: ONE cosine over the whole vector
    b, gb = params[name]['bias'], direction[name]['bias']
    np.testing.assert_allclose(out[name]['bias'], b * np.clip(_torch_cos(b, gb), LAM, 1),
                               rtol=1e-5, atol=1e-7)


def test_cosine_normalises_each_vector_as_torch_does():
  """Tiny norms: product below 1e-8 (and norms below 1e-8) -> torch's rule."""
  rng = np.random.default_rng(0)
  a = (rng.normal(size=(5, 3)) * np.array([1e-5, 3e-9, 1.0])).astype(np.float32)
  b = (rng.normal(size=(5, 3)) * np.array([2e-5, 1e-3, 5e-9])).astype(np.float32)
  got = np.asarray(dash.cosine(a, b, 0))[0]
  want = [_torch_cos(a[:, j], b[:, j]) for j in range(3)]
  old = [_old_cos(a[:, j], b[:, j]) for j in range(3)]
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
  assert not np.allclose(old, want, rtol=1e-3, atol=1e-3)  # the older rule fails here


def test_one_number_slices_of_1x1_convs_give_plus_minus_one():
  """per='kernel' on a 1x1 conv: each cosine is over one number -> sign only."""
  k = np.array([3e-5, -2e-5, 4e-5, 1e-5], np.float32).reshape(1, 1, 2, 2)
  d = np.array([-2e-5, -5e-5, 1e-5, -3e-5], np.float32).reshape(1, 1, 2, 2)
  params = {'c': {'kernel': k}}
  s = np.asarray(shrink_factors(params, {'c': {'kernel': d}}, LAM)['c']['kernel']).ravel()
  np.testing.assert_array_equal(s, np.where(np.sign(k) == np.sign(d), 1.0, LAM).astype(np.float32).ravel())
  old = np.clip([_old_cos(x, y) for x, y in zip(k.ravel(), d.ravel())], LAM, 1)
  assert not np.allclose(old, s)


def test_cosine_equals_torch_when_installed():
  torch = pytest.importorskip('torch')
  rng = np.random.default_rng(1)
  a = (rng.normal(size=(4, 6)) * 1e-5).astype(np.float32)
  b = (rng.normal(size=(4, 6)) * 2e-5).astype(np.float32)
  want = torch.nn.functional.cosine_similarity(torch.tensor(a), torch.tensor(b), dim=0)
  np.testing.assert_allclose(np.asarray(dash.cosine(a, b, 0))[0], want.numpy(), rtol=1e-5)


def test_scale_within_lambda_and_one(conv_tree):
  params, direction = conv_tree
  for per in ('kernel', 'neuron'):
    for s in jax.tree.leaves(shrink_factors(params, direction, LAM, per)):
      assert np.all(np.asarray(s) >= LAM - 1e-7) and np.all(np.asarray(s) <= 1 + 1e-7)


def test_aligned_unchanged_and_anti_aligned_scaled_by_lambda(conv_tree):
  params, _ = conv_tree
  out = dash_shrink(params, jax.tree.map(lambda p: 2.5 * p, params), LAM)
  _close(out, params, rtol=1e-6)
  out = dash_shrink(params, jax.tree.map(lambda p: -p, params), LAM)
  for name in ('conv', 'head'):
    for leaf in ('kernel', 'bias'):
      np.testing.assert_allclose(out[name][leaf], LAM * params[name][leaf], rtol=1e-6)


def test_norm_layers_untouched(conv_tree):
  params, direction = conv_tree
  out = dash_shrink(params, direction, LAM)
  np.testing.assert_array_equal(out['bn']['scale'], params['bn']['scale'])
  np.testing.assert_array_equal(out['bn']['bias'], params['bn']['bias'])


@pytest.mark.parametrize('per', ['kernel', 'neuron'])
def test_never_increases_any_slice_norm(conv_tree, per):
  params, direction = conv_tree
  out = dash_shrink(params, direction, LAM, per=per)
  k0, k1 = params['conv']['kernel'], out['conv']['kernel']
  assert np.all(np.linalg.norm(k1, axis=(0, 1)) <= np.linalg.norm(k0, axis=(0, 1)) + 1e-6)
  h0, h1 = params['head']['kernel'], out['head']['kernel']
  assert np.all(np.linalg.norm(h1, axis=0) <= np.linalg.norm(h0, axis=0) + 1e-6)
  assert np.linalg.norm(out['head']['bias']) <= np.linalg.norm(params['head']['bias']) + 1e-6


def test_per_neuron_is_one_cosine_per_output_channel(conv_tree):
  params, direction = conv_tree
  a = dash_shrink(params, direction, LAM, per='kernel')
  b = dash_shrink(params, direction, LAM, per='neuron')
  np.testing.assert_array_equal(a['head']['kernel'], b['head']['kernel'])
  np.testing.assert_array_equal(a['head']['bias'], b['head']['bias'])
  w, g = params['conv']['kernel'], direction['conv']['kernel']
  expected = np.stack([w[..., o] * np.clip(_torch_cos(w[..., o], g[..., o]), LAM, 1)
                       for o in range(4)], -1)
  np.testing.assert_allclose(b['conv']['kernel'], expected, rtol=1e-5, atol=1e-6)
  assert not np.allclose(a['conv']['kernel'], b['conv']['kernel'])


dash_shrink_jit = jax.jit(dash_shrink, static_argnames='per')


@pytest.mark.slow
def test_jit_equals_eager_on_full_model_tree():
  params = _params(models.MLP(num_classes=10, width=16, depth=3), (1, 8, 8, 1))
  direction = _random_like(params, 3)
  eager = dash_shrink(params, direction, LAM)
  _close(eager, dash_shrink_jit(params, direction, LAM, per='kernel'), rtol=1e-6)
  assert set(eager) == {'fc1', 'bn1', 'fc2', 'bn2', 'head'}
  assert all(not np.allclose(eager[k]['kernel'], params[k]['kernel'])
             for k in ('fc1', 'fc2', 'head'))


def test_zero_vectors_use_the_eps_guard():
  params = {'d': {'kernel': np.zeros((3, 2), np.float32), 'bias': np.ones(2, np.float32)}}
  direction = {'d': {'kernel': np.ones((3, 2), np.float32), 'bias': np.zeros(2, np.float32)}}
  out = dash_shrink(params, direction, LAM)
  assert np.all(np.isfinite(out['d']['kernel'])) and np.all(out['d']['kernel'] == 0)
  np.testing.assert_allclose(out['d']['bias'], LAM * np.ones(2))  # cos 0 -> lam


def test_frozendict_in_frozendict_out(conv_tree):
  params, direction = conv_tree
  frozen = flax.core.freeze(params)
  for fn in (dash.shrink, dash_shrink_jit):
    out = fn(frozen, direction, LAM)
    assert isinstance(out, flax.core.FrozenDict)
    _close(flax.core.unfreeze(out), dash.shrink(params, direction, LAM))
  assert type(dash.shrink(params, direction, LAM)) is dict


def test_param_roles():
  roles = dash.param_roles(_params(models.MLP(num_classes=3, width=4, depth=2), (1, 2, 2, 1)))
  assert roles == {'fc1': {'kernel': 'kernel', 'bias': 'bias'},
                   'bn1': {'scale': 'norm_scale', 'bias': 'norm_bias'},
                   'head': {'kernel': 'kernel', 'bias': 'bias'}}


# --------------------------------------------------------------------- NNX


class NnxNet(nnx.Module):
  def __init__(self, rngs):
    self.conv = nnx.Conv(1, 3, (2, 2), rngs=rngs)
    self.bn = nnx.BatchNorm(3, rngs=rngs)
    self.head = nnx.Linear(3, 4, rngs=rngs)

  def __call__(self, x):
    return self.head(nnx.relu(self.bn(self.conv(x))).mean((1, 2)))


def _nnx_model():
  model = NnxNet(nnx.Rngs(0))
  rng = np.random.default_rng(5)  # running statistics off their init: eval mode matters
  model.bn.mean[...] = jnp.asarray(rng.normal(size=3), jnp.float32)
  model.bn.var[...] = jnp.asarray(rng.uniform(0.5, 2.0, size=3), jnp.float32)
  model.eval()
  return model


def _batches(n, seed=0, shape=(6, 4, 4, 1), classes=4):
  rng = np.random.default_rng(seed)
  return [(jnp.asarray(rng.normal(size=shape), jnp.float32),
           jnp.asarray(rng.integers(0, classes, shape[0]), jnp.int32)) for _ in range(n)]


def _ce(logits, y):
  return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def _model_loss(model, batch):
  x, y = batch
  return _ce(model(x), y)


def _nnx_split_loss(graphdef, rest):
  def loss(params, batch):
    return _model_loss(nnx.merge(graphdef, params, rest), batch)
  return loss


@pytest.mark.slow
def test_shrink_on_nnx_state_equals_shrink_on_linen_dict_and_merges_back():
  model = _nnx_model()
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  direction = jax.tree.map(lambda p: jnp.asarray(np.random.default_rng(2).normal(size=p.shape),
                                                 p.dtype), params)
  out = dash.shrink(params, direction, LAM)
  assert isinstance(out, nnx.State)
  want = dash.shrink(nnx.to_pure_dict(params), nnx.to_pure_dict(direction), LAM)
  _close(nnx.to_pure_dict(out), want, rtol=1e-6)
  np.testing.assert_array_equal(want['bn']['scale'], params['bn']['scale'][...])
  assert not np.allclose(want['conv']['kernel'], params['conv']['kernel'][...])
  merged = nnx.merge(graphdef, out, rest)
  np.testing.assert_array_equal(merged.head.kernel[...], want['head']['kernel'])
  x = _batches(1)[0][0]
  assert merged(x).shape == (6, 4) and np.all(np.isfinite(merged(x)))
  assert not np.allclose(merged(x), model(x))
  assert nnx.to_pure_dict(dash.param_roles(params)) == {
      'conv': {'kernel': 'kernel', 'bias': 'bias'}, 'head': {'kernel': 'kernel', 'bias': 'bias'},
      'bn': {'scale': 'norm_scale', 'bias': 'norm_bias'}}


def _grad_loop(loss, params, batches, alpha):
  g = jax.tree.map(jnp.zeros_like, params)
  for b in batches:
    grad = jax.grad(loss)(params, b)
    g = jax.tree.map(lambda a, d: (1 - alpha) * a + alpha * (-d), g, grad)
  return g


@pytest.mark.slow
def test_direction_equals_grad_loop_linen_and_takes_a_generator():
  model = models.MLP(num_classes=4, width=8, depth=2)
  variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 4, 4, 1)), train=False)
  stats = jax.tree.map(lambda s: s + 0.5, variables['batch_stats'])  # eval mode matters

  def loss(params, batch):
    x, y = batch
    return _ce(model.apply({'params': params, 'batch_stats': stats}, x, train=False), y)

  batches = _batches(3)
  got = dash.direction(loss, variables['params'], batches, alpha=0.4)
  _close(got, _grad_loop(loss, variables['params'], batches, 0.4), rtol=1e-5, atol=1e-7)
  _close(dash.direction(loss, variables['params'], (b for b in batches), alpha=0.4), got,
         rtol=0, atol=0)


@pytest.mark.slow
def test_direction_equals_nnx_grad_loop_with_batchnorm_in_eval_mode():
  model = _nnx_model()
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  batches = _batches(3, seed=1)
  got = dash.direction(_nnx_split_loss(graphdef, rest), params, batches, alpha=0.3)
  assert isinstance(got, nnx.State)
  g = None
  for b in batches:  # nnx.grad on the model itself: an independent path
    grad = nnx.grad(_model_loss)(model, b)
    g = (jax.tree.map(lambda d: -0.3 * d, grad) if g is None else
         jax.tree.map(lambda a, d: 0.7 * a - 0.3 * d, g, grad))
  _close(nnx.to_pure_dict(got), nnx.to_pure_dict(g), rtol=1e-5, atol=1e-7)
  np.testing.assert_array_equal(model.bn.mean[...], rest['bn']['mean'][...])  # not moved


def test_apply_updates_the_nnx_model_in_place():
  model = _nnx_model()
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  before = jax.tree.map(jnp.copy, params)
  batches = _batches(2, seed=3)
  want = dash.shrink(before, dash.direction(_nnx_split_loss(graphdef, rest), before, batches),
                     LAM)
  dash.apply(model, _model_loss, batches, lam=LAM)
  _close(nnx.to_pure_dict(nnx.state(model, nnx.Param)), nnx.to_pure_dict(want), rtol=1e-6)
  size = dash._ema_step._cache_size()
  dash.apply(model, _model_loss, batches, lam=LAM)  # a second round reuses the program
  assert dash._ema_step._cache_size() == size


def test_compilations_do_not_grow_with_the_number_of_batches():
  params = {'d': {'kernel': jnp.ones((3, 2)), 'bias': jnp.zeros(2)}}

  def loss(p, batch):  # a fresh function: its own cache entries
    return jnp.mean((batch @ p['d']['kernel'] + p['d']['bias']) ** 2)

  start = dash._ema_step._cache_size()
  dash.direction(loss, params, [np.ones((4, 3), np.float32)] * 2)
  after_two = dash._ema_step._cache_size()
  dash.direction(loss, params, [np.full((4, 3), i, np.float32) for i in range(7)])
  assert after_two - start == 1
  assert dash._ema_step._cache_size() == after_two


@pytest.mark.slow
def test_direction_equals_the_protocols_on_device_pass():
  model = models.MLP(num_classes=4, width=8, depth=2)
  state = train.create_state(model, optim.sgd(0.05), jax.random.PRNGKey(0), (3, 3, 1), False)
  rng = np.random.default_rng(0)
  data = {'train_x': jnp.asarray(rng.integers(0, 256, (40, 3, 3, 1), dtype=np.uint8)),
          'train_y': jnp.asarray(rng.integers(0, 4, 40, dtype=np.int32)),
          'mean': jnp.asarray([100.0]), 'std': jnp.asarray([60.0])}
  x = train.normalise(data['train_x'], data['mean'], data['std'])
  state, _ = train.train_step(state, x, data['train_y'], jnp.ones(40), train.StepConfig())
  buffer_idx = jnp.asarray(rng.permutation(40).astype(np.int32))
  want = train.full_data_direction(state, data, buffer_idx, 3, 0.3, chunk_size=10)
  batches = [(x[buffer_idx[i * 10:(i + 1) * 10]], data['train_y'][buffer_idx[i * 10:(i + 1) * 10]])
             for i in range(3)]

  def loss(params, batch):
    logits, _ = train.forward(state, params, state.batch_stats, batch[0], False)
    return _ce(logits, batch[1])

  _close(dash.direction(loss, state.params, batches, alpha=0.3), want, rtol=1e-5, atol=1e-7)


# ------------------------------------------------------------------ misuse


def _one_line(error):
  assert '\n' not in str(error.value)


def test_direction_tree_mismatch_names_the_path(conv_tree):
  params, direction = conv_tree
  missing = {k: v for k, v in direction.items()}
  missing['head'] = {'kernel': direction['head']['kernel']}
  with pytest.raises(UserError, match='head/bias') as e:
    dash.shrink(params, missing, LAM)
  _one_line(e)
  extra = dict(direction, extra={'w': np.ones(2)})
  with pytest.raises(UserError, match='extra/w'):
    dash.shrink(params, extra, LAM)
  wrong = dict(direction, head={'kernel': np.ones((2, 2)), 'bias': direction['head']['bias']})
  with pytest.raises(UserError, match='head/kernel has shape'):
    dash.shrink(params, wrong, LAM)


@pytest.mark.parametrize('lam', [0.0, -0.1, 1.5, np.float32(2.0)])
def test_lambda_outside_0_1_is_refused(conv_tree, lam):
  params, direction = conv_tree
  with pytest.raises(UserError, match=r'lam must be in \(0, 1\]') as e:
    dash.shrink(params, direction, lam)
  _one_line(e)


def test_lambda_one_keeps_everything(conv_tree):
  params, direction = conv_tree
  _close(dash.shrink(params, direction, 1.0), params, rtol=0, atol=0)


def test_unknown_per_is_refused(conv_tree):
  params, direction = conv_tree
  with pytest.raises(UserError, match="per must be 'kernel' or 'neuron'"):
    dash.shrink(params, direction, LAM, per='layer')


def test_empty_batches_and_non_scalar_loss_are_refused():
  params = {'d': {'kernel': jnp.ones((3, 2))}}
  per_example = lambda p, x: (x @ p['d']['kernel']).sum(-1)
  with pytest.raises(UserError, match='batches is empty') as e:
    dash.direction(per_example, params, iter([]))
  _one_line(e)
  with pytest.raises(UserError, match=r'loss_fn must return a scalar, got \(4,\)') as e:
    dash.direction(per_example, params, [jnp.ones((4, 3))])
  _one_line(e)
  with pytest.raises(UserError, match=r'alpha must be in \(0, 1\]'):
    dash.direction(lambda p, x: per_example(p, x).sum(), params, [jnp.ones((4, 3))], alpha=0.0)
