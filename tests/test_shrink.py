"""Invariants of dash_shrink, checked against a direct torch-layout reference."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dash_jax import models
from dash_jax.shrink import dash_shrink, dash_shrink_jit, shrink_factors

LAM = 0.3


class TinyConvNet(nn.Module):
  @nn.compact
  def __call__(self, x, train=False, mask=None):
    x = nn.Conv(4, (3, 3), name='conv')(x)
    x = models.batch_norm(nn.BatchNorm, train, jnp.float32, 'bn')(x, mask=models._bn_mask(mask, x))
    x = nn.relu(x).mean((1, 2))
    return nn.Dense(3, name='head')(x)


def _params(model, shape, seed=0):
  v = model.init(jax.random.PRNGKey(seed), jnp.zeros(shape), train=False)
  return jax.tree.map(np.asarray, v['params'])


def _random_like(tree, seed):
  leaves, treedef = jax.tree.flatten(tree)
  keys = jax.random.split(jax.random.PRNGKey(seed), len(leaves))
  return jax.tree.unflatten(treedef, [np.asarray(jax.random.normal(k, l.shape))
                                      for k, l in zip(keys, leaves)])


@pytest.fixture(scope='module')
def conv_tree():
  params = _params(TinyConvNet(), (1, 6, 6, 2))
  params['bn'] = {'scale': np.full(4, 1.5, np.float32), 'bias': np.full(4, 0.2, np.float32)}
  return params, _random_like(params, 1)


def _torch_cos(a, b, axis):
  dot = np.sum(a * b, axis=axis)
  return dot / np.maximum(np.linalg.norm(a, axis=axis) * np.linalg.norm(b, axis=axis), 1e-8)


def test_matches_original_per_kernel_formula(conv_tree):
  params, direction = conv_tree
  out = dash_shrink(params, direction, LAM)
  # Original: weight (o, i, h, w) -> cosine over (h w) per (o, i).
  w = np.transpose(params['conv']['kernel'], (3, 2, 0, 1)).reshape(4, 2, 9)
  g = np.transpose(direction['conv']['kernel'], (3, 2, 0, 1)).reshape(4, 2, 9)
  expected = (w * np.clip(_torch_cos(w, g, -1), LAM, 1)[..., None]).reshape(4, 2, 3, 3)
  np.testing.assert_allclose(np.transpose(out['conv']['kernel'], (3, 2, 0, 1)),
                             expected, rtol=1e-5, atol=1e-6)
  # Linear weight (out, in): cosine per output row.
  w, g = params['head']['kernel'].T, direction['head']['kernel'].T
  np.testing.assert_allclose(out['head']['kernel'].T,
                             w * np.clip(_torch_cos(w, g, -1), LAM, 1)[:, None], rtol=1e-5)
  # Bias: ONE cosine over the whole vector.
  b, gb = params['head']['bias'], direction['head']['bias']
  s = np.clip(_torch_cos(b, gb, None), LAM, 1)
  np.testing.assert_allclose(out['head']['bias'], b * s, rtol=1e-5, atol=1e-7)


def test_scale_within_lambda_and_one(conv_tree):
  params, direction = conv_tree
  for per in ('kernel', 'neuron'):
    for s in jax.tree.leaves(shrink_factors(params, direction, LAM, per)):
      assert np.all(np.asarray(s) >= LAM - 1e-7) and np.all(np.asarray(s) <= 1 + 1e-7)


def test_aligned_unchanged_and_anti_aligned_scaled_by_lambda(conv_tree):
  params, _ = conv_tree
  aligned = jax.tree.map(lambda p: 2.5 * p, params)
  out = dash_shrink(params, aligned, LAM)
  for a, b in zip(jax.tree.leaves(out), jax.tree.leaves(params)):
    np.testing.assert_allclose(a, b, rtol=1e-6)
  anti = jax.tree.map(lambda p: -p, params)
  out = dash_shrink(params, anti, LAM)
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


def test_per_kernel_and_per_neuron_differ_only_for_convs(conv_tree):
  params, direction = conv_tree
  a = dash_shrink(params, direction, LAM, per='kernel')
  b = dash_shrink(params, direction, LAM, per='neuron')
  np.testing.assert_array_equal(a['head']['kernel'], b['head']['kernel'])
  np.testing.assert_array_equal(a['head']['bias'], b['head']['bias'])
  assert not np.allclose(a['conv']['kernel'], b['conv']['kernel'])
  # per='neuron': one factor per output channel over (kh, kw, in).
  s = shrink_factors(params, direction, LAM, per='neuron')['conv']['kernel']
  assert s.shape == (1, 1, 1, 4)


def test_jit_equals_eager_on_full_model_tree():
  model = models.MLP(num_classes=10, width=16, depth=3)
  params = _params(model, (1, 8, 8, 1))
  direction = _random_like(params, 3)
  eager = dash_shrink(params, direction, LAM)
  jitted = dash_shrink_jit(params, direction, LAM, per='kernel')
  assert jax.tree.structure(eager) == jax.tree.structure(jitted)
  for a, b in zip(jax.tree.leaves(eager), jax.tree.leaves(jitted)):
    np.testing.assert_allclose(a, b, rtol=1e-6)
  assert set(eager) == {'fc1', 'bn1', 'fc2', 'bn2', 'head'}
  changed = [not np.allclose(eager[k]['kernel'], params[k]['kernel'])
             for k in ('fc1', 'fc2', 'head')]
  assert all(changed)


def test_zero_vectors_use_the_eps_guard():
  params = {'d': {'kernel': np.zeros((3, 2), np.float32), 'bias': np.ones(2, np.float32)}}
  direction = {'d': {'kernel': np.ones((3, 2), np.float32), 'bias': np.zeros(2, np.float32)}}
  out = dash_shrink(params, direction, LAM)
  assert np.all(np.isfinite(out['d']['kernel'])) and np.all(out['d']['kernel'] == 0)
  np.testing.assert_allclose(out['d']['bias'], LAM * np.ones(2))  # cos 0 -> lam
