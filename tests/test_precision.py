"""config.precision='bfloat16': conv/dense inputs and activations in bf16;
parameters, BatchNorm statistics, logits, loss and gradients in float32;
with either kernel set."""
import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dash_jax
from configs.digits import get_config
from dash_jax import models, xla_cpu
from dash_jax.errors import UserError
from dash_jax.launch import config as config_lib

LAYERS = (nn.Conv, nn.Dense, xla_cpu.Conv, nn.BatchNorm, xla_cpu.BatchNorm)
F32, BF16 = jnp.dtype(jnp.float32), jnp.dtype(jnp.bfloat16)


def _build(name, backend, precision='bfloat16'):
  config = get_config()
  config.width, config.depth, config.precision = 16, 3, precision
  return models.get(name).build(config, 10, backend)


def _traced_step(module, input_shape):
  """Trace (no compute) one train-mode loss and gradient; record each conv /
  dense / BatchNorm call's (class, input dtype, output dtype)."""
  calls = []

  def record(next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    if context.method_name == '__call__' and isinstance(context.module, LAYERS):
      calls.append((type(context.module), args[0].dtype, out.dtype))
    return out

  x = jnp.zeros((2,) + input_shape)

  def step():
    variables = module.init(jax.random.PRNGKey(0), x, train=False)

    def loss(params):
      logits, upd = module.apply({**variables, 'params': params}, x, train=True,
                                 mask=jnp.ones(2), mutable=['batch_stats'],
                                 rngs={'dropout': jax.random.PRNGKey(1)})
      return jnp.mean(logits ** 2), (logits, upd)
    with nn.intercept_methods(record):
      out = jax.value_and_grad(loss, has_aux=True)(variables['params'])
    return variables, out
  variables, ((value, (logits, upd)), grads) = jax.eval_shape(step)
  return calls, variables, value, logits, upd, grads


@pytest.mark.parametrize('backend', ['cpu', 'gpu'])  # xla_cpu / Flax kernels
@pytest.mark.parametrize('name,input_shape', [('mlp', (6, 6, 1)), ('resnet18', (8, 8, 3)),
                                              ('resnet18_sota', (8, 8, 3)),
                                              ('vgg16', (32, 32, 3))])
@pytest.mark.slow
def test_bfloat16_dtypes(name, input_shape, backend):
  calls, variables, value, logits, upd, grads = _traced_step(
      _build(name, backend), input_shape)
  convs = [c for c in calls if c[0] in (nn.Conv, xla_cpu.Conv)]
  norms = [c for c in calls if c[0] in (nn.BatchNorm, xla_cpu.BatchNorm)]
  denses = [c for c in calls if c[0] is nn.Dense]
  assert len(denses) == {'mlp': 3, 'vgg16': 3}.get(name, 1)
  assert len(convs) == {'mlp': 0, 'vgg16': 13}.get(name, 20)
  assert {c[0] for c in convs} <= {xla_cpu.Conv if backend == 'cpu' else nn.Conv}
  assert {c[0] for c in norms} == {xla_cpu.BatchNorm if backend == 'cpu' else nn.BatchNorm}
  assert all((i, o) == (BF16, BF16) for _, i, o in convs + denses + norms), calls
  for tree in (variables, upd, grads):
    assert {leaf.dtype for leaf in jax.tree.leaves(tree)} == {F32}
  assert logits.dtype == F32 and value.dtype == F32


def test_float32_is_float32_throughout():
  calls, *_ = _traced_step(_build('resnet18', 'cpu', 'float32'), (8, 8, 3))
  assert calls and all((i, o) == (F32, F32) for _, i, o in calls)


@pytest.mark.parametrize('norm', [nn.BatchNorm, xla_cpu.BatchNorm])
def test_bfloat16_batchnorm_statistics_in_float32(norm):
  """An offset that bf16 cannot resolve (256 + small spread): statistics
  reduced in bf16 would be off by ~1; float32 gets them to 1e-5."""
  x = (256.0 + jnp.linspace(-1, 1, 64 * 3).reshape(64, 3)).astype(jnp.bfloat16)
  bn = models.batch_norm(norm, True, jnp.bfloat16)
  variables = bn.init(jax.random.PRNGKey(0), x)
  y, upd = bn.apply(variables, x, mutable=['batch_stats'])
  x32 = np.asarray(x, np.float32)
  np.testing.assert_allclose(upd['batch_stats']['mean'], 0.1 * x32.mean(0), rtol=1e-5)
  np.testing.assert_allclose(upd['batch_stats']['var'], 0.9 + 0.1 * x32.var(0), rtol=1e-5)
  assert y.dtype == BF16
  np.testing.assert_allclose(np.asarray(y, np.float32),
                             (x32 - x32.mean(0)) / np.sqrt(x32.var(0) + 1e-5), atol=0.02)


@pytest.mark.slow
@pytest.mark.parametrize('name,input_shape', [('mlp', (6, 6, 1)), ('resnet18', (8, 8, 3))])
def test_bfloat16_logits_track_float32(name, input_shape):
  """Same parameters, bf16 compute: logits within bf16 rounding of float32.
  (Evaluation mode: batch statistics of 4 examples at 1x1 amplify rounding.)"""
  x = jax.random.normal(jax.random.PRNGKey(0), (4,) + input_shape)
  f32, bf16 = _build(name, 'cpu', 'float32'), _build(name, 'cpu', 'bfloat16')
  variables = jax.jit(lambda k: f32.init(k, x, train=False))(jax.random.PRNGKey(1))
  run = lambda m: jax.jit(lambda v: m.apply(v, x, train=False))
  a, b = run(f32)(variables), run(bf16)(variables)
  assert b.dtype == F32 and not np.array_equal(a, b)  # bf16 really computed
  scale = float(jnp.max(jnp.abs(a)))
  np.testing.assert_allclose(b, a, atol=0.05 * scale)


def test_precision_is_validated_and_guarded():
  config = get_config()
  assert config.precision == 'float32'
  assert 'precision' not in config_lib.EXECUTION_FIELDS  # it changes numbers
  config.precision = 'float16'
  with pytest.raises(UserError, match='precision'):
    config_lib.validate(config)


@pytest.mark.slow
def test_bfloat16_end_to_end(tiny_config, tmp_path):
  tiny_config.precision, tiny_config.train_type = 'bfloat16', 'dash'
  out = dash_jax.run(tiny_config, str(tmp_path))
  run = out['dash-sgd-seed0']
  assert [e['experiment'] for e in run['experiments']] == [1, 2, 3]
  assert run['experiments'][-1]['test_acc'] > 0.5  # it learns (chance: 0.1; float32 0.94)
  with open(tmp_path / 'dash-sgd-seed0' / 'results.json') as f:
    assert json.load(f)['config']['precision'] == 'bfloat16'
