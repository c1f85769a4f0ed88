"""Each training type changes exactly what it should between experiments."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ml_collections import ConfigDict

from configs.digits import get_config
from dash_jax import models, optim, train, training_types
from dash_jax.training_types import TRAINING_TYPES, Context, L2Init

MODEL = models.MLP(num_classes=3, width=8, depth=2)
TX = optim.sgd(0.1, 0.9)
CONFIG = ConfigDict(dict(sp_lambda=0.3, sp_sigma=0.01, dash_lambda=0.3, dash_alpha=0.3,
                         dash_per='kernel', l2_init_lambda=0.5, l2_init_form='sq_dist',
                         redo_tau=0.1, cbp_replacement_rate=1e-4, cbp_maturity_threshold=100))


def fresh(key):
  return train.create_state(MODEL, TX, key, (4, 4, 1), keep_init=False)


@pytest.fixture(scope='module')
def trained():
  """A state after two steps: non-zero momentum, moved BatchNorm stats."""
  state = fresh(jax.random.PRNGKey(0))
  x = jax.random.normal(jax.random.PRNGKey(1), (16, 4, 4, 1))
  y = jnp.arange(16) % 3
  for _ in range(2):
    state, _ = train.train_step(state, x, y, jnp.ones(16), train.StepConfig())
  return state


def ctx(direction=None, train_type='warm'):
  return Context(key=jax.random.PRNGKey(7), experiment=2,
                 hparams=TRAINING_TYPES[train_type].hparams(CONFIG), fresh_state=fresh,
                 direction=lambda s, alpha: direction, head=('head',))


def momentum(state):
  return state.opt_state.inner_state[1].trace


def same(a, b):
  return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_registry_hooks():
  assert set(TRAINING_TYPES) == {'cold', 'warm', 'warm_rm', 'reset', 'l2_init', 'sp', 'dash',
                                 'redo', 'cbp'}
  assert TRAINING_TYPES['warm'] == training_types.TrainingType('Warm')
  assert TRAINING_TYPES['dash'].before is not None and TRAINING_TYPES['dash'].after is None
  assert [t.label for t in TRAINING_TYPES.values()] == [
      'Cold', 'Warm', 'Warm ReM', 'Reset', 'L2 Init', 'S&P', 'DASH', 'ReDo', 'CBP']
  assert TRAINING_TYPES['redo'].before is not None and TRAINING_TYPES['cbp'].after is None


def test_training_types_build_their_own_hyper_parameters():
  assert TRAINING_TYPES['dash'].hparams(CONFIG) == training_types.Dash(0.3, 0.3, 'kernel')
  assert TRAINING_TYPES['sp'].hparams(CONFIG) == training_types.ShrinkPerturb(0.3, 0.01)
  l2 = TRAINING_TYPES['l2_init']
  assert l2.regularizer_for(l2.hparams(CONFIG)) == L2Init(0.5, 'sq_dist')
  assert TRAINING_TYPES['redo'].hparams(CONFIG) == training_types.Redo(0.1)
  assert TRAINING_TYPES['cbp'].hparams(CONFIG) == training_types.Cbp(1e-4, 100)
  assert not TRAINING_TYPES['redo'].active(training_types.Redo(0.0))
  assert not TRAINING_TYPES['cbp'].active(training_types.Cbp(0.0, 100))
  assert TRAINING_TYPES['cbp'].active(training_types.Cbp(1e-4, 100))
  assert all(TRAINING_TYPES[t].regularizer_for(CONFIG) is None
             for t in TRAINING_TYPES if t != 'l2_init')


def test_warm_rm_zeroes_momentum_keeps_weights(trained):
  assert any(np.any(np.asarray(t) != 0) for t in jax.tree.leaves(momentum(trained)))
  out = training_types.warm_rm(trained, ctx())
  assert same(out.params, trained.params) and same(out.batch_stats, trained.batch_stats)
  assert all(np.all(np.asarray(t) == 0) for t in jax.tree.leaves(momentum(out)))


def test_cold_replaces_everything(trained):
  out = training_types.cold(trained, ctx())
  for name in ('fc1', 'head'):
    assert not np.allclose(out.params[name]['kernel'], trained.params[name]['kernel'])
  assert all(np.all(np.asarray(t) == 0) for t in jax.tree.leaves(momentum(out)))
  np.testing.assert_array_equal(out.batch_stats['bn1']['mean'], 0)
  assert int(out.step) == 0


def test_reset_changes_only_the_head(trained):
  out = training_types.reset(trained, ctx())
  assert same(out.params['fc1'], trained.params['fc1'])
  assert same(out.params['bn1'], trained.params['bn1'])
  assert not np.allclose(out.params['head']['kernel'], trained.params['head']['kernel'])
  assert same(momentum(out), momentum(trained))


# ------------------------------------------------------------------ reset


def _state(params, batch_stats=None):
  """A train state with non-zero momentum everywhere."""
  state = train.TrainState.create(apply_fn=None, params=params, tx=TX,
                                  batch_stats=batch_stats or {})
  return state.replace(opt_state=jax.tree.map(lambda t: t + 0.5, state.opt_state))


def _filled(module, input_shape):
  """A model's variables without its init: every entry 0.25 (cheap, and
  unlike any init, so a redraw shows)."""
  variables = jax.eval_shape(lambda: module.init(
      jax.random.PRNGKey(0), jnp.zeros((1,) + input_shape), train=False))
  return jax.tree.map(lambda v: jnp.full(v.shape, 0.25, v.dtype), variables)


def _assert_torch_linear(layer, fan_in, n_out):
  """PyTorch's nn.Linear default: kernel and bias U(+-1/sqrt(fan_in))."""
  bound = 1 / np.sqrt(fan_in)
  w, b = np.asarray(layer['kernel']), np.asarray(layer['bias'])
  assert w.shape == (fan_in, n_out) and b.shape == (n_out,)
  for v, tol in ((w, 0.05), (b, 0.25)):
    assert np.abs(v).max() <= bound
    assert abs(v.std() / (bound / np.sqrt(3)) - 1) < tol, (v.std(), bound)
    assert len(np.unique(v)) > 0.9 * v.size  # drawn, not a constant


def _reset(name, params, batch_stats, fresh=None):
  spec = models.get(name)
  state = _state(params, batch_stats)
  c = Context(key=jax.random.PRNGKey(3), experiment=2, hparams=None, fresh_state=fresh,
              direction=None, head=tuple(spec.head), head_init=spec.head_init)
  return state, TRAINING_TYPES['reset'].after(state, c)


def _only_head_changed(before, after, head):
  for name in before.params:
    if name in head:
      continue
    assert same(after.params[name], before.params[name]), name
  assert same(after.batch_stats, before.batch_stats)
  assert same(momentum(after), momentum(before))


@pytest.mark.parametrize('name,input_shape,fan_in', [
    ('mlp', (6, 6, 1), 64),  # depth 3: the head is fc3 of the original
    ('resnet18', (8, 8, 3), 512)])
@pytest.mark.slow
def test_reset_redraws_the_head_as_torch_default(name, input_shape, fan_in):
  config = get_config()
  config.model, config.width, config.depth = name, 64, 3
  module = models.get(name).build(config, 100)
  variables = _filled(module, input_shape)
  fresh = lambda key: train.create_state(module, TX, key, input_shape, keep_init=False)
  before, after = _reset(name, variables['params'], variables['batch_stats'], fresh)
  head, = models.get(name).head
  if name == 'mlp':
    assert set(variables['params']) == {'fc1', 'bn1', 'fc2', 'bn2', 'head'}
  _only_head_changed(before, after, (head,))
  _assert_torch_linear(after.params[head], fan_in, 100)


@pytest.mark.slow
def test_reset_redraws_vgg_classifier_as_reset_parameters():
  """VGG's own Linear init is N(0, 0.01) with zero bias; the original's reset
  calls reset_parameters(): U(+-1/sqrt(fan_in)) for all three Linears'
  weights and biases. The classifier here is VGG's at 1/100 of the width
  (the full one is 120M weights); the real tree has the same layers."""
  config = get_config()
  config.model = 'vgg16'
  real = jax.eval_shape(lambda: models.build(config, 10).init(
      jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)), train=False))['params']
  assert set(real['classifier']) == {'fc1', 'fc2', 'fc3'}
  shapes = {'fc1': (256, 128), 'fc2': (128, 128), 'fc3': (128, 100)}
  classifier = {k: {'kernel': jnp.full(s, 0.25), 'bias': jnp.zeros(s[1])}
                for k, s in shapes.items()}
  params = {'conv1': {'kernel': jnp.ones((3, 3, 3, 4)), 'bias': jnp.zeros(4)},
            'bn1': {'scale': jnp.ones(4), 'bias': jnp.zeros(4)}, 'classifier': classifier}
  batch_stats = {'bn1': {'mean': jnp.ones(4), 'var': jnp.ones(4)}}

  def fresh(key):  # VGG's own init: what reset must NOT give the classifier
    own = {k: {'kernel': models.vgg_linear_kernel(key, s), 'bias': jnp.zeros(s[1])}
           for k, s in shapes.items()}
    return _state(dict(params, classifier=own), batch_stats)
  before, after = _reset('vgg16', params, batch_stats, fresh)
  _only_head_changed(before, after, ('classifier',))
  for layer, (fan_in, n_out) in shapes.items():
    _assert_torch_linear(after.params['classifier'][layer], fan_in, n_out)
  # Real sizes keep shapes and dtypes.
  out = jax.eval_shape(models.torch_linear_reset, jax.random.PRNGKey(0), real['classifier'])
  assert jax.tree.map(lambda v: (v.shape, v.dtype), out) == jax.tree.map(
      lambda v: (v.shape, v.dtype), real['classifier'])


@pytest.mark.slow
def test_shrink_perturb_leaves_batchnorm(trained):
  out = training_types.shrink_perturb(trained, ctx(train_type='sp'))
  assert same(out.params['bn1'], trained.params['bn1'])
  assert same(out.batch_stats, trained.batch_stats)
  assert same(momentum(out), momentum(trained))
  for name in ('fc1', 'head'):
    for leaf in ('kernel', 'bias'):
      noise = np.asarray(out.params[name][leaf]) - 0.3 * np.asarray(trained.params[name][leaf])
      assert 0 < np.abs(noise).max() < 0.06  # N(0, 0.01^2) perturbation
  noise = np.asarray(out.params['fc1']['kernel']) - 0.3 * np.asarray(trained.params['fc1']['kernel'])
  assert 0.007 < noise.std() < 0.013


def _numpy_dash(params, direction, lam):
  """DASH on Dense layers, one slice at a time: each output unit's weights
  (a kernel column), then the whole bias, scaled by clip(cos, lam, 1)."""
  def cos(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.dot(a / max(np.linalg.norm(a), 1e-8), b / max(np.linalg.norm(b), 1e-8))
  out = {}
  for name, module in params.items():
    d = direction[name]
    if 'kernel' not in module:
      out[name] = {k: np.asarray(v) for k, v in module.items()}
      continue
    k, dk = np.asarray(module['kernel']), np.asarray(d['kernel'])
    kernel = np.stack([k[:, j] * np.clip(cos(k[:, j], dk[:, j]), lam, 1)
                       for j in range(k.shape[1])], 1)
    bias = np.asarray(module['bias']) * np.clip(cos(module['bias'], d['bias']), lam, 1)
    out[name] = {'kernel': kernel, 'bias': bias}
  return out


def test_dash_shrinks_kernels_only(trained):
  leaves, treedef = jax.tree.flatten(trained.params)
  keys = jax.random.split(jax.random.PRNGKey(3), len(leaves))
  direction = jax.tree.unflatten(treedef, [jax.random.normal(k, p.shape)
                                           for k, p in zip(keys, leaves)])
  out = TRAINING_TYPES['dash'].before(trained, ctx(direction, 'dash'))
  expected = _numpy_dash(trained.params, direction, 0.3)
  assert jax.tree.structure(out.params) == jax.tree.structure(expected)
  for a, b in zip(jax.tree.leaves(out.params), jax.tree.leaves(expected)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
  assert same(out.params['bn1'], trained.params['bn1'])
  assert not np.allclose(out.params['fc1']['kernel'], trained.params['fc1']['kernel'])
  anti = jax.tree.map(lambda p: -p, trained.params)  # anti-aligned: scale = lambda
  out_anti = TRAINING_TYPES['dash'].before(trained, ctx(anti, 'dash'))
  np.testing.assert_allclose(out_anti.params['fc1']['kernel'],
                             0.3 * trained.params['fc1']['kernel'], rtol=1e-6)
  assert same(momentum(out), momentum(trained))


@pytest.mark.slow
def test_l2_init_forms_by_hand():
  init = {'fc': {'kernel': jnp.zeros((2, 2)), 'bias': jnp.zeros(2)},
          'bn': {'scale': jnp.ones(2), 'bias': jnp.zeros(2)}}
  params = {'fc': {'kernel': jnp.array([[3.0, 0.0], [0.0, 4.0]]), 'bias': jnp.array([1.0, 1.0])},
            'bn': {'scale': jnp.array([1.0, 3.0]), 'bias': jnp.array([2.0, 0.0])}}
  # original: (||dK|| + ||dScale||)^2 = (5 + 2)^2, biases excluded
  assert np.isclose(L2Init(0.5, 'sum_norm_sq')(params, init), 0.5 * 49)
  # Kumar et al.: sum of squared distances over everything = 25 + 2 + 4 + 4
  assert np.isclose(L2Init(0.5, 'sq_dist')(params, init), 0.5 * 35)
  grads = jax.grad(L2Init(0.5, 'sum_norm_sq'))(init, init)  # at the anchor
  assert all(np.all(np.isfinite(g)) and np.all(np.asarray(g) == 0) for g in jax.tree.leaves(grads))
