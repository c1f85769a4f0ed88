"""xla_cpu.BatchNorm is nn.BatchNorm: variables, outputs, running
statistics and gradients (with and without a mask), with either gradient."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dash_jax.xla_cpu import batchnorm


@pytest.mark.parametrize('grad', ['manual', 'autodiff'])
@pytest.mark.parametrize('shape,masked', [((6, 4, 4, 5), True), ((6, 4, 4, 5), False),
                                          ((6, 7), True)])
@pytest.mark.slow
def test_matches_flax_batchnorm(grad, shape, masked):
  x = jax.random.normal(jax.random.PRNGKey(0), shape) * 3 + 1
  w = jax.random.normal(jax.random.PRNGKey(2), shape)
  mask = None
  if masked:  # the padded final batch: last two examples do not count
    mask = jnp.broadcast_to((jnp.arange(6) < 4).reshape((6,) + (1,) * (len(shape) - 1)), shape)
  ref = nn.BatchNorm(use_running_average=False, momentum=0.9, epsilon=1e-5)
  ours = batchnorm.BatchNorm(use_running_average=False, grad=grad)
  v_ref, v_ours = ref.init(jax.random.PRNGKey(1), x), ours.init(jax.random.PRNGKey(1), x)
  assert jax.tree.structure(v_ref) == jax.tree.structure(v_ours)
  jax.tree.map(np.testing.assert_array_equal, v_ref, v_ours)
  params = {'scale': jnp.linspace(0.5, 2, shape[-1]), 'bias': jnp.linspace(-1, 1, shape[-1])}

  def loss(module):
    def f(p, x):
      y, upd = module.apply({'params': p, 'batch_stats': v_ref['batch_stats']}, x,
                            mask=mask, mutable=['batch_stats'])
      return jnp.sum(jnp.sin(y) * w), upd
    return jax.value_and_grad(f, (0, 1), has_aux=True)
  a, b = loss(ref)(params, x), loss(ours)(params, x)
  for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-5)
  # Evaluation mode: the running statistics.
  stats = {'mean': jnp.arange(shape[-1]) * 0.1, 'var': jnp.linspace(0.5, 2, shape[-1])}
  ev = lambda m: m.apply({'params': params, 'batch_stats': stats}, x)
  np.testing.assert_allclose(
      ev(batchnorm.BatchNorm(True)),
      ev(nn.BatchNorm(use_running_average=True, momentum=0.9, epsilon=1e-5)),
      rtol=1e-6, atol=1e-6)
