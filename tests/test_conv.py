"""xla_cpu's conv / max-pool compute what lax conv and nn.max_pool do
(values and gradients) and keep nn.Conv's parameters, so switching kernels
never changes a run's numbers beyond float rounding."""
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dash_jax import models, xla_cpu
from dash_jax.xla_cpu import conv

CONVS = [  # input size, in, out, kernel, stride, padding
    (9, 3, 5, 3, 1, 1),
    (8, 4, 6, 3, 2, 1),
    (7, 4, 6, 1, 2, 0),  # ResNet downsample: 1x1 stride 2
    (10, 3, 4, 3, 1, 0),
    (5, 2, 3, 3, 2, 1),
    (3, 2, 3, 3, 1, 1),
]
POLICIES = ['matmul', 'lax', 'lax4']


@pytest.fixture
def policy(request):
  return conv.Policy(fwd=request.param, dx=request.param, dw=request.param)


def _allclose(a, b, tol=1e-4):
  """Equal up to `tol` relative to each array's largest entry."""
  for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    scale = max(float(jnp.max(jnp.abs(v))), 1.0)
    np.testing.assert_allclose(u, v, rtol=0, atol=tol * scale)


@pytest.mark.parametrize('policy', POLICIES, indirect=True)
@pytest.mark.parametrize('size,cin,cout,k,stride,pad', CONVS)
def test_conv_matches_lax(policy, size, cin, cout, k, stride, pad):
  x = jax.random.normal(jax.random.PRNGKey(0), (2, size, size, cin))
  w = jax.random.normal(jax.random.PRNGKey(1), (k, k, cin, cout)) / k
  padding = ((pad, pad), (pad, pad))

  def loss(impl):
    return lambda x, w: jnp.sum(jnp.sin(conv.conv2d(x, w, (stride, stride), padding, impl,
                                                    policy)))
  ref = jax.value_and_grad(loss('lax'), (0, 1))(x, w)
  _allclose(jax.value_and_grad(loss('matmul'), (0, 1))(x, w), ref)
  _allclose(jax.jit(jax.value_and_grad(loss('matmul'), (0, 1)))(x, w), ref)


POOLS = [  # input size, window, stride, padding
    (8, 3, 2, 1),  # ResNet-18's stem pool
    (7, 3, 2, 1),
    (6, 2, 2, 0),  # VGG, even input
    (7, 2, 2, 1),  # VGG's odd-size pool (28x28 -> 7x7 -> pad 1)
    (3, 2, 2, 1),
]


@pytest.mark.parametrize('size,window,stride,pad', POOLS)
@pytest.mark.parametrize('ties', [False, True])
def test_max_pool_matches_nn(size, window, stride, pad, ties):
  x = jax.random.normal(jax.random.PRNGKey(0), (2, size, size, 3))
  if ties:  # ReLU outputs: many equal maxima; gradient goes to the first
    x = jnp.maximum(jnp.round(x), 0.0)
  args = ((window, window), (stride, stride), ((pad, pad), (pad, pad)))
  ref = nn.max_pool(x, args[0], strides=args[1], padding=args[2])
  out, vjp = jax.vjp(lambda x: conv.max_pool(x, *args, impl='matmul'), x)
  np.testing.assert_array_equal(out, ref)
  g = jax.random.normal(jax.random.PRNGKey(1), ref.shape)
  _, ref_vjp = jax.vjp(lambda x: nn.max_pool(x, args[0], strides=args[1], padding=args[2]), x)
  np.testing.assert_allclose(vjp(g)[0], ref_vjp(g)[0], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize('bias', [False, True])
def test_conv_module_params_equal_nn_conv(bias):
  """Same names, shapes and initial values as flax's nn.Conv."""
  x = jnp.ones((1, 6, 6, 3))
  kw = {'features': 4, 'kernel_size': (3, 3), 'strides': (2, 2),
        'padding': ((1, 1), (1, 1)), 'use_bias': bias,
        'kernel_init': models.kaiming_fan_out, 'bias_init': nn.initializers.normal(1.0)}
  ours = conv.Conv(**kw).init(jax.random.PRNGKey(0), x)
  ref = nn.Conv(**kw).init(jax.random.PRNGKey(0), x)
  assert jax.tree.structure(ours) == jax.tree.structure(ref)
  jax.tree.map(np.testing.assert_array_equal, ours, ref)
  np.testing.assert_allclose(conv.Conv(**kw).apply(ours, x), nn.Conv(**kw).apply(ref, x),
                             rtol=1e-5, atol=1e-5)


def test_impl_is_an_explicit_choice():
  """No backend guess inside the kernels: the registry picks them."""
  assert conv._use_matmul('matmul') is True and conv._use_matmul('lax') is False
  for bad in ('auto', 'cudnn'):
    with pytest.raises(ValueError):
      conv._use_matmul(bad)


def test_policy_is_part_of_the_module():
  """Two policies are two modules (and two jit cache entries), not a global
  read at trace time."""
  a = xla_cpu.Conv(4, (3, 3))
  b = xla_cpu.Conv(4, (3, 3), policy=conv.Policy(fwd='matmul'))
  assert a != b and hash(a.policy) != hash(b.policy)
  assert xla_cpu.Conv(4, (3, 3)) == a


@pytest.mark.slow
def test_resnet18_same_numbers_either_path():
  """A small ResNet-18 train-mode forward/backward agrees across paths.
  (Not batch 2 at 8x8: BatchNorm over two 1x1 maps amplifies rounding.)"""
  x = jax.random.normal(jax.random.PRNGKey(0), (4, 16, 16, 3))

  def grads(impl):
    model = models.ResNet18(
        10, conv=functools.partial(xla_cpu.Conv, impl=impl),
        norm=functools.partial(xla_cpu.BatchNorm, grad='manual' if impl == 'matmul'
                               else 'autodiff'),
        pool=functools.partial(xla_cpu.max_pool, impl=impl))
    variables = model.init(jax.random.PRNGKey(1), x)

    def loss(p):
      out, _ = model.apply({**variables, 'params': p}, x, train=True,
                           mutable=['batch_stats'])
      return jnp.sum(out ** 2)
    return jax.jit(jax.value_and_grad(loss))(variables['params'])  # one compile, not op by op
  _allclose(grads('matmul'), grads('lax'), tol=1e-3)
