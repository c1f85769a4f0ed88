"""The paper's models: parameter counts of the original PyTorch
architectures, their inits, and one train and one eval step each."""
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs.digits import get_config
from dash_jax import models, setup, train, xla_cpu

# PyTorch counts (BatchNorm weight and bias included, running stats not):
# torchvision resnet18 has 11,689,512 parameters; the CIFAR stem is 3x3
# (-7,680) and fc has 10 outputs (-507,870). Both ResNet-18 variants have the
# same layers. torchvision vgg16_bn has 138,365,992 (1000 classes).
RESNET18_CIFAR10 = 11_173_962
VGG16_BN_IMAGENET = 138_365_992


def resnet18_count(classes):
  return RESNET18_CIFAR10 + 513 * (classes - 10)


def vgg16_count(classes, channels=3):
  return VGG16_BN_IMAGENET - 4097 * (1000 - classes) - 64 * 9 * (3 - channels)


def mlp_count(classes, inputs, width=1000, depth=2):
  hidden = (inputs + 1) * width + 2 * width + (depth - 2) * (width * width + 3 * width)
  return hidden + (width + 1) * classes


CASES = [  # model, input shape, classes, expected parameter count
    ('resnet18', (32, 32, 3), 10, 11_173_962),
    ('resnet18', (32, 32, 3), 100, 11_220_132),
    ('resnet18', (64, 64, 3), 200, 11_271_432),
    ('resnet18_sota', (32, 32, 3), 10, 11_173_962),
    ('resnet18_sota', (64, 64, 3), 200, 11_271_432),
    ('vgg16', (32, 32, 3), 10, 134_309_962),
    ('vgg16', (28, 28, 1), 10, 134_308_810),
    ('vgg16', (64, 64, 3), 200, vgg16_count(200)),
    ('mlp', (32, 32, 3), 10, 3_085_010),
    ('mlp', (28, 28, 1), 10, 797_010),
]


def build(name, classes, depth=2):
  config = get_config()
  config.width, config.depth = 1000, depth
  return models.get(name).build(config, classes)


def shapes(module, input_shape, batch=1):
  """Variables and logits of a model, shapes only (no compute)."""
  x = jnp.zeros((batch,) + input_shape)
  variables = jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), x, train=False))
  logits = jax.eval_shape(lambda v: module.apply(v, x, train=False), variables)
  return variables, logits


@pytest.mark.slow
@pytest.mark.parametrize('name,input_shape,classes,expected', CASES)
def test_parameter_count_matches_the_original(name, input_shape, classes, expected):
  variables, logits = shapes(build(name, classes), input_shape, batch=3)
  count = sum(int(np.prod(v.shape)) for v in jax.tree.leaves(variables['params']))
  assert count == expected
  assert logits.shape == (3, classes)


def test_count_formulas_agree_with_the_table():
  assert resnet18_count(100) == 11_220_132 and resnet18_count(200) == 11_271_432
  assert vgg16_count(10) == 134_309_962 and vgg16_count(10, channels=1) == 134_308_810
  assert mlp_count(10, 3072) == 3_085_010 and mlp_count(10, 784) == 797_010
  variables, _ = shapes(build('mlp', 100, depth=3), (32, 32, 3))
  assert (sum(int(np.prod(v.shape)) for v in jax.tree.leaves(variables['params']))
          == mlp_count(100, 3072, depth=3))


@pytest.mark.slow
def test_every_model_has_its_head_and_conv_kernels_are_hwio():
  for name, head in [('resnet18', ('fc',)), ('resnet18_sota', ('fc',)),
                     ('vgg16', ('classifier',)), ('mlp', ('head',))]:
    assert tuple(models.get(name).head) == head
    variables, _ = shapes(build(name, 10), (32, 32, 3))
    assert set(head) <= set(variables['params'])
  variables, _ = shapes(build('resnet18', 10), (32, 32, 3))
  params = variables['params']
  assert params['conv1']['kernel'].shape == (3, 3, 3, 64)
  assert params['layer2_0']['down_conv']['kernel'].shape == (1, 1, 64, 128)
  assert params['fc']['kernel'].shape == (512, 10)


def test_sota_swaps_resnet18_for_its_variant():
  config = get_config()
  config.model = 'resnet18'
  assert models.resolve_name(config.model, config.sota) == 'resnet18'
  config.sota = True
  assert models.resolve_name(config.model, config.sota) == 'resnet18_sota'
  config.model = 'vgg16'
  assert models.resolve_name(config.model, config.sota) == 'vgg16'


# ------------------------------------------------------- kernel injection


def test_registry_injects_xla_cpu_kernels_on_cpu_only():
  config = get_config()
  for name in ('resnet18', 'resnet18_sota', 'vgg16'):
    cpu, gpu = (models.get(name).build(config, 10, b) for b in ('cpu', 'gpu'))
    assert (cpu.conv, cpu.norm, cpu.pool) == (xla_cpu.Conv, xla_cpu.BatchNorm,
                                              xla_cpu.max_pool)
    assert (gpu.conv, gpu.norm, gpu.pool) == (nn.Conv, nn.BatchNorm, nn.max_pool)
  cpu, gpu = (models.get('mlp').build(config, 10, b) for b in ('cpu', 'gpu'))
  assert (cpu.norm, gpu.norm) == (xla_cpu.BatchNorm, nn.BatchNorm)
  assert jax.default_backend() == 'cpu'  # tests/conftest.py
  config.model = 'resnet18'
  assert models.build(config, 10) == models.get('resnet18').build(config, 10, 'cpu')


def _both(name, classes=10):
  config = get_config()
  config.width, config.depth = 16, 3
  return [models.get(name).build(config, classes, b) for b in ('cpu', 'gpu')]


@pytest.mark.slow
@pytest.mark.parametrize('name', ['mlp', 'resnet18', 'resnet18_sota', 'vgg16'])
def test_same_param_tree_either_kernels(name):
  """A checkpoint made on CPU restores on GPU: same names, shapes, dtypes."""
  trees = [jax.tree.map(lambda v: (v.shape, v.dtype), shapes(m, (32, 32, 3))[0])
           for m in _both(name)]
  assert trees[0] == trees[1]


@pytest.mark.parametrize('name,input_shape', [('mlp', (6, 6, 1)), ('resnet18', (8, 8, 3)),
                                              ('resnet18_sota', (8, 8, 3))])
@pytest.mark.slow
def test_same_numbers_either_kernels(name, input_shape):
  """Same initial values, logits and BatchNorm statistics; a padded example
  (masked out) moves neither kernel set's statistics."""
  x = jax.random.normal(jax.random.PRNGKey(0), (5,) + input_shape)
  junk = x.at[4].set(100.0)  # the padded slot of a final batch
  mask = jnp.array([1.0, 1.0, 1.0, 1.0, 0.0])
  out = []
  for module in _both(name):
    variables = jax.jit(functools.partial(module.init, train=False))(jax.random.PRNGKey(1), x)

    @jax.jit
    def run(variables, module=module):
      ev = module.apply(variables, x, train=False)
      tr, upd = module.apply(variables, junk, train=True, mask=mask, mutable=['batch_stats'])
      _, ref = module.apply(variables, x[:4], train=True, mutable=['batch_stats'])
      return variables, ev, tr[:4], upd, ref
    out.append(run(variables))
  (v_cpu, ev_cpu, tr_cpu, upd_cpu, ref_cpu), (v_gpu, ev_gpu, tr_gpu, upd_gpu, _) = out
  jax.tree.map(np.testing.assert_array_equal, v_cpu, v_gpu)
  for a, b in ((ev_cpu, ev_gpu), (tr_cpu, tr_gpu), (upd_cpu, upd_gpu), (upd_cpu, ref_cpu)):
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
      np.testing.assert_allclose(u, v, rtol=1e-4, atol=1e-4)
  assert float(jnp.max(jnp.abs(ev_cpu))) > 0


def test_epoch_mode_rule_lives_in_the_spec():
  assert models.epoch_mode('mlp', 'cpu') == 'scan'
  for name in ('resnet18', 'resnet18_sota', 'vgg16'):
    assert models.get(name).cpu_epoch_mode == 'loop'
    assert models.epoch_mode(name, 'cpu') == 'loop'
  for name in models.MODELS:
    assert models.epoch_mode(name, 'gpu') == models.epoch_mode(name, 'tpu') == 'scan'
  config = get_config()
  for name, mode in (('mlp', 'scan'), ('vgg16', 'loop')):  # on this CPU
    config.model, config.epoch_mode = name, 'auto'
    assert setup.epoch_mode(config.epoch_mode, config.model) == mode
    config.epoch_mode = 'scan'
    assert setup.epoch_mode(config.epoch_mode, config.model) == 'scan'


def test_adaptive_avg_pool_matches_torch_bins():
  x = jnp.arange(2 * 3 * 3 * 1, dtype=jnp.float32).reshape(2, 3, 3, 1)
  out = models.adaptive_avg_pool(x, 2)  # torch bins for 3 -> 2: [0, 2), [1, 3)
  np.testing.assert_allclose(out[0, 0, 0, 0], x[0, :2, :2, 0].mean())
  np.testing.assert_allclose(out[1, 1, 0, 0], x[1, 1:, :2, 0].mean())
  ones = models.adaptive_avg_pool(jnp.ones((1, 1, 1, 4)), 7)
  assert ones.shape == (1, 7, 7, 4) and bool(jnp.all(ones == 1))


# ------------------------------------------------------------------ inits


def _record_inits(monkeypatch, module, input_shape):
  """{initializer name: [kernel shapes]} of an abstract init (no compute)."""
  calls = {}
  def spy(name, init):
    def draw(key, shape, dtype=jnp.float32):
      calls.setdefault(name, []).append(tuple(shape))
      return init(key, shape, dtype)
    return draw
  for name in ('kaiming_fan_out', 'torch_conv_kernel', 'torch_linear_kernel',
               'vgg_linear_kernel'):
    monkeypatch.setattr(models, name, spy(name, getattr(models, name)))
  jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0),
                                     jnp.zeros((1,) + input_shape), train=False))
  return calls


def test_each_layer_gets_the_original_init(monkeypatch):
  calls = _record_inits(monkeypatch, build('resnet18', 10), (32, 32, 3))
  assert set(calls) == {'kaiming_fan_out', 'torch_linear_kernel'}
  assert len(calls['kaiming_fan_out']) == 20  # stem + 16 block convs + 3 downsample
  assert all(len(shape) == 4 for shape in calls['kaiming_fan_out'])
  assert calls['torch_linear_kernel'] == [(512, 10)]
  calls = _record_inits(monkeypatch, build('resnet18_sota', 10), (32, 32, 3))
  assert set(calls) == {'torch_conv_kernel', 'torch_linear_kernel'}
  assert len(calls['torch_conv_kernel']) == 20
  calls = _record_inits(monkeypatch, build('vgg16', 10), (32, 32, 3))
  assert set(calls) == {'kaiming_fan_out', 'vgg_linear_kernel'}
  assert len(calls['kaiming_fan_out']) == 13
  assert calls['vgg_linear_kernel'] == [(25088, 4096), (4096, 4096), (4096, 10)]
  calls = _record_inits(monkeypatch, build('mlp', 10, depth=3), (32, 32, 3))
  assert calls == {'torch_linear_kernel': [(3072, 1000), (1000, 1000), (1000, 10)]}


def test_initializers_have_the_original_distributions():
  key, shape = jax.random.PRNGKey(0), (3, 3, 256, 512)
  draw = jax.jit(lambda: (models.kaiming_fan_out(key, shape),
                          models.torch_conv_kernel(key, shape),
                          models.vgg_linear_kernel(key, (512, 512))))
  kaiming, torch_conv, vgg_linear = draw()
  std = np.sqrt(2.0 / (3 * 3 * 512))  # fan_out, ReLU gain
  assert abs(float(jnp.std(kaiming)) / std - 1) < 0.02
  assert float(jnp.mean(jnp.abs(kaiming) > 2 * std)) > 0.04  # normal, not truncated
  bound = 1 / np.sqrt(3 * 3 * 256)  # kaiming_uniform(a=sqrt(5)) = U(+-1/sqrt(fan_in))
  assert 0.99 * bound < float(jnp.max(jnp.abs(torch_conv))) <= 1.0001 * bound
  assert abs(float(jnp.std(torch_conv)) / (bound / np.sqrt(3)) - 1) < 0.02
  assert abs(float(jnp.std(vgg_linear)) / 0.01 - 1) < 0.02


def test_biases_and_batchnorm_start_as_the_original():
  # The same modules the models are built from, at small sizes.
  block = models.BasicBlock(8, 2)
  params = jax.jit(functools.partial(block.init, train=False))(
      jax.random.PRNGKey(0), jnp.zeros((1, 4, 4, 4)))['params']
  assert 'bias' not in params['conv1'] and bool(jnp.all(params['bn1']['scale'] == 1))
  assert bool(jnp.all(params['bn1']['bias'] == 0))
  conv = models.TorchConv(nn.Conv, bias=True)(8, 3, 1, 1)
  params = jax.jit(conv.init)(jax.random.PRNGKey(0), jnp.zeros((1, 4, 4, 3)))['params']
  assert bool(jnp.all(params['bias'] == 0))
  mlp = build('mlp', 10)
  bias = jax.jit(functools.partial(mlp.init, train=False))(
      jax.random.PRNGKey(0), jnp.zeros((1, 4, 4, 3)))['params']['head']['bias']
  assert 0 < float(jnp.max(jnp.abs(bias))) <= 1 / np.sqrt(1000)  # PyTorch Linear


# ------------------------------------------------------------ real steps


def _filled(module, input_shape):
  """Variables without the model's init (jax.random draws VGG-16's 134M
  weights in ~10 s on a CPU): kernels N(0, 1/fan_in) from numpy, tiled past
  1M entries, BatchNorm scale and variance 1, everything else 0."""
  variables = shapes(module, input_shape)[0]
  rng = np.random.default_rng(0)
  def fill(path, leaf):
    name = path[-1].key
    if name == 'kernel':
      size = int(np.prod(leaf.shape))
      fan_in = size // leaf.shape[-1]
      draw = rng.standard_normal(min(size, 1 << 20)) / np.sqrt(fan_in)
      return jnp.asarray(np.resize(draw.astype(np.float32), leaf.shape))
    return jnp.full(leaf.shape, 1.0 if name in ('scale', 'var') else 0.0, leaf.dtype)
  return jax.tree_util.tree_map_with_path(fill, variables)


@pytest.mark.slow
@pytest.mark.parametrize('name', ['mlp', 'resnet18', 'resnet18_sota', 'vgg16'])
def test_train_and_eval_step(name):
  module = build(name, 10)
  variables = _filled(module, (32, 32, 3))
  state = train.TrainState.create(
      apply_fn=module.apply, params=variables['params'], tx=optax.sgd(0.05),
      batch_stats=variables['batch_stats'])  # the optimizer is not under test
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(2, 32, 32, 3)), jnp.float32)
  y = jnp.asarray([3, 7], jnp.int32)
  mask = jnp.ones((2,), jnp.float32)

  @jax.jit
  def step_and_eval(state, key):  # one compile for step, eval and checks
    new, metrics = train.train_step(state, x, y, mask, train.StepConfig(), key)
    changed = lambda a, b: jax.tree.map(lambda u, v: jnp.any(u != v), a, b)
    return (metrics, train.eval_step(new, x, y, mask),
            changed(new.params, state.params),
            changed(new.batch_stats, state.batch_stats))
  metrics, evaluated, moved, stats = step_and_eval(state, jax.random.PRNGKey(1))
  assert bool(jnp.all(jnp.isfinite(metrics)))
  moved = jax.tree_util.tree_leaves_with_path(moved)
  assert all(bool(m) for path, m in moved if path[-1].key == 'kernel')
  stats = jax.tree.leaves(stats)
  assert stats and all(bool(s) for s in stats)
  correct, loss = np.asarray(evaluated)
  assert correct in (0.0, 1.0, 2.0) and np.isfinite(loss) and loss > 0
