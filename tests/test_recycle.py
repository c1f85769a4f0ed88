"""ReDo and Continual Backprop recycle exactly the units they should."""
import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ml_collections import ConfigDict

import dash_jax
from dash_jax import models, optim, recycle, train, training_types
from tests import helpers

MODEL = models.MLP(num_classes=3, width=8, depth=3)
TX = optim.sgd(0.1, 0.9)
X = jax.random.normal(jax.random.PRNGKey(1), (16, 4, 4, 1))
CONFIG = ConfigDict(dict(redo_tau=0.1, cbp_replacement_rate=1e-4, cbp_maturity_threshold=100))


def fresh(key):
  return train.create_state(MODEL, TX, key, (4, 4, 1), keep_init=False)


@pytest.fixture(scope='module')
def trained():
  """Two SGD steps: non-zero momentum everywhere, moved BatchNorm statistics."""
  state = fresh(jax.random.PRNGKey(0))
  y = jnp.arange(16) % 3
  for _ in range(2):
    state, _ = train.train_step(state, X, y, jnp.ones(16), train.StepConfig())
  return state


def ctx(train_type, steps=0):
  units = models.mlp_units(fresh(jax.random.PRNGKey(0)).params)
  return training_types.Context(
      key=jax.random.PRNGKey(7), experiment=2,
      hparams=training_types.TRAINING_TYPES[train_type].hparams(CONFIG), fresh_state=fresh,
      direction=None, head=('head',), units=units, steps=steps,
      activity=lambda s: recycle.unit_activity(
          s.apply_fn, {'params': s.params, 'batch_stats': s.batch_stats}, X, units))


def momentum(state):
  return state.opt_state.inner_state[1].trace


def with_dormant(state, dormant):
  """BatchNorm scale 0 everywhere, so a unit's activation is ReLU(its BN
  bias): 0 (dormant) for the units in `dormant[bn]`, 1 for the others."""
  params = dict(state.params)
  for bn, units in dormant.items():
    bias = np.ones(8, np.float32)
    bias[units] = 0.0
    params[bn] = {'scale': jnp.zeros(8), 'bias': jnp.asarray(bias)}
  return state.replace(params=params)


def expected_touch(params, dormant1, dormant2):
  """Which parameters ReDo may change for dormant units of layers 1 and 2."""
  t = jax.tree.map(lambda p: np.zeros(p.shape, bool), params)
  t['fc1']['kernel'][:, dormant1] = True
  t['fc1']['bias'][dormant1] = True
  t['bn1']['scale'][dormant1] = t['bn1']['bias'][dormant1] = True
  t['fc2']['kernel'][dormant1, :] = True
  t['fc2']['kernel'][:, dormant2] = True
  t['fc2']['bias'][dormant2] = True
  t['bn2']['scale'][dormant2] = t['bn2']['bias'][dormant2] = True
  t['head']['kernel'][dormant2, :] = True
  return t


def test_redo_recycles_exactly_the_dormant_units(trained):
  state = with_dormant(trained, {'bn1': [1, 5], 'bn2': [0]})
  out = training_types.redo(state, ctx('redo'))
  # what the incoming weights are drawn from
  new = jax.tree.map(np.asarray, fresh(jax.random.PRNGKey(7)).params)
  p, q = jax.tree.map(np.asarray, (state.params, out.params))
  stats = jax.tree.map(np.asarray, (state.batch_stats, out.batch_stats))
  want = np.array(p['fc1']['kernel'])
  want[:, [1, 5]] = new['fc1']['kernel'][:, [1, 5]]
  np.testing.assert_array_equal(q['fc1']['kernel'], want)
  want = np.array(p['fc2']['kernel'])
  want[:, 0] = new['fc2']['kernel'][:, 0]
  want[[1, 5], :] = 0.0  # the outgoing side wins where a recycled unit feeds another
  np.testing.assert_array_equal(q['fc2']['kernel'], want)
  np.testing.assert_array_equal(q['fc1']['bias'][[1, 5]], 0.0)
  np.testing.assert_array_equal(q['bn1']['scale'][[1, 5]], 1.0)
  np.testing.assert_array_equal(q['head']['kernel'][0], 0.0)
  np.testing.assert_array_equal(stats[1]['bn1']['mean'][[1, 5]], 0.0)
  np.testing.assert_array_equal(stats[1]['bn2']['var'][0], 1.0)
  touched = expected_touch(p, [1, 5], [0])
  for path, mask in jax.tree_util.tree_leaves_with_path(touched):
    before = np.asarray(_at(p, path))
    after = np.asarray(_at(q, path))
    np.testing.assert_array_equal(after[~mask], before[~mask], err_msg=str(path))
    m_before, m_after = np.asarray(_at(momentum(state), path)), np.asarray(_at(momentum(out), path))
    assert np.all(m_before[mask] != 0), path  # so zero below is the reset's doing
    np.testing.assert_array_equal(m_after[mask], 0.0, err_msg=str(path))
    np.testing.assert_array_equal(m_after[~mask], m_before[~mask], err_msg=str(path))
  keep = [u for u in range(8) if u not in (1, 5)]
  for stat in ('mean', 'var'):
    np.testing.assert_array_equal(stats[1]['bn1'][stat][keep], stats[0]['bn1'][stat][keep])


def _at(tree, path):
  for k in path:
    tree = tree[k.key]
  return tree


def test_redo_without_dormant_units_changes_nothing(trained):
  state = with_dormant(trained, {'bn1': [], 'bn2': []})
  out = training_types.redo(state, ctx('redo'))
  for a, b in zip(jax.tree.leaves((state.params, state.opt_state, state.batch_stats)),
                  jax.tree.leaves((out.params, out.opt_state, out.batch_stats))):
    np.testing.assert_array_equal(a, b)


def test_redo_score_is_relative_to_the_layer_mean():
  scores = recycle.redo_scores([jnp.asarray([0.0, 0.1, 1.0, 2.9])])[0]
  np.testing.assert_allclose(scores, [0.0, 0.1, 1.0, 2.9], rtol=1e-6)  # layer mean 1
  masks = recycle.redo_masks([jnp.asarray([0.0, 0.1, 1.0, 2.9])], 0.1)[0]
  assert masks.tolist() == [True, True, False, False]  # <= tau, as the authors
  assert not recycle.redo_masks([jnp.asarray([0.0, 1.0])], 0.0)[0].any()  # tau 0: off


def _bn_eval(z, scale, bias, stats):
  return (z - stats['mean']) / np.sqrt(stats['var'] + 1e-5) * scale + bias


def test_cbp_utilities_by_hand(trained):
  p, s = jax.tree.map(np.asarray, (trained.params, trained.batch_stats))
  x = np.asarray(X).reshape(16, -1)
  h1 = np.maximum(_bn_eval(x @ p['fc1']['kernel'] + p['fc1']['bias'], p['bn1']['scale'],
                           p['bn1']['bias'], s['bn1']), 0)
  h2 = np.maximum(_bn_eval(h1 @ p['fc2']['kernel'] + p['fc2']['bias'], p['bn2']['scale'],
                           p['bn2']['bias'], s['bn2']), 0)
  want = [np.abs(h1).mean(0) * np.abs(np.asarray(p['fc2']['kernel'])).sum(1),
          np.abs(h2).mean(0) * np.abs(np.asarray(p['head']['kernel'])).sum(1)]
  c = ctx('cbp')
  got = recycle.cbp_utilities(c.activity(trained), trained.params, c.units)
  for g, w in zip(got, want):
    np.testing.assert_allclose(g, w, rtol=1e-5)


def test_cbp_count():
  assert int(recycle.cbp_count(512, 400, 1e-4, 100)) == 20  # floor(20.48)
  assert int(recycle.cbp_count(500, 200, 1e-4, 100)) == 10  # exact product, not 9
  assert int(recycle.cbp_count(512, 100, 1e-4, 100)) == 0  # not older than maturity
  assert int(recycle.cbp_count(8, 10**6, 0.5, 0)) == 8  # at most the layer


def test_cbp_replaces_the_lowest_utility_units(trained):
  c = ctx('cbp', steps=2500)  # floor(1e-4 * 8 * 2500) = 2 units a layer
  utilities = recycle.cbp_utilities(c.activity(trained), trained.params, c.units)
  out = training_types.cbp(trained, c)
  for layer, util, nxt in zip(('fc1', 'fc2'), utilities, ('fc2', 'head')):
    zeroed = np.flatnonzero(np.all(np.asarray(out.params[nxt]['kernel']) == 0, axis=1))
    assert sorted(zeroed) == sorted(np.argsort(np.asarray(util))[:2].tolist()), layer
  same = training_types.cbp(trained, ctx('cbp', steps=100))  # immature: nothing replaced
  for a, b in zip(jax.tree.leaves(same.params), jax.tree.leaves(trained.params)):
    np.testing.assert_array_equal(a, b)


@pytest.mark.slow  # a full-size ResNet-18
def test_resnet_units_are_block_first_convs():
  model = models.get('resnet18').build(ConfigDict(dict(precision='float32')), 10)
  variables = model.init(jax.random.PRNGKey(0), jnp.zeros((2, 8, 8, 1)), train=False)
  params = jax.tree.map(np.asarray, dict(variables['params']))
  units = models.resnet_units(params)
  assert [u.incoming for u in units][:2] == [('layer1_0', 'conv1'), ('layer1_1', 'conv1')]
  assert len(units) == 8
  x = jax.random.normal(jax.random.PRNGKey(2), (2, 8, 8, 1))
  activity = recycle.unit_activity(model.apply, variables, x, units)
  assert [a.shape[0] for a in activity] == [64, 64, 128, 128, 256, 256, 512, 512]
  masks = [jnp.arange(a.shape[0]) == 3 for a in activity]
  new = jax.tree.map(lambda p: p + 1.0, params)
  out, stats, _ = recycle.recycle(params, dict(variables['batch_stats']), (), new, units, masks)
  block = 'layer2_1'
  k1, k2 = np.asarray(out[block]['conv1']['kernel']), np.asarray(out[block]['conv2']['kernel'])
  np.testing.assert_array_equal(k1[..., 3], params[block]['conv1']['kernel'][..., 3] + 1.0)
  np.testing.assert_array_equal(k1[..., 4], params[block]['conv1']['kernel'][..., 4])
  np.testing.assert_array_equal(k2[:, :, 3, :], 0.0)
  np.testing.assert_array_equal(k2[:, :, 4, :], params[block]['conv2']['kernel'][:, :, 4, :])
  np.testing.assert_array_equal(out['conv1']['kernel'], params['conv1']['kernel'])  # stem
  np.testing.assert_array_equal(stats[block]['bn1']['var'][3], 1.0)


@pytest.mark.slow
def test_switched_off_is_warm_exactly(tiny_config, tmp_path):
  tiny_config.train_type = 'warm,redo,cbp'
  tiny_config.redo_tau = 0.0
  tiny_config.cbp_replacement_rate = 0.0
  out = dash_jax.run(tiny_config, str(tmp_path))
  warm = helpers.numbers(out['warm-sgd-seed0'])
  assert helpers.numbers(out['redo-sgd-seed0']) == warm
  assert helpers.numbers(out['cbp-sgd-seed0']) == warm


@pytest.mark.slow
def test_switched_on_differs_from_warm(tiny_config, tmp_path):
  tiny_config.train_type = 'warm,cbp'
  tiny_config.cbp_replacement_rate = 0.01
  tiny_config.cbp_maturity_threshold = 0
  out = dash_jax.run(tiny_config, str(tmp_path))
  assert helpers.numbers(out['cbp-sgd-seed0'])[1:] != helpers.numbers(out['warm-sgd-seed0'])[1:]


@pytest.mark.slow
def test_all_nine_types_write_one_report(tiny_config, tmp_path):
  names = 'cold,warm,warm_rm,reset,l2_init,sp,dash,redo,cbp'
  tiny_config.train_type = names
  tiny_config.depth = 3  # reset re-draws fc3... here the MLP's head
  tiny_config.num_chunks = 2
  tiny_config.max_epoch = 2
  dash_jax.run(tiny_config, str(tmp_path))
  report = (tmp_path / 'report.md').read_text()
  for label in ('Cold', 'Warm', 'Warm ReM', 'Reset', 'L2 Init', 'S&P', 'DASH', 'ReDo', 'CBP'):
    assert f'| {label} |' in report, label
  with open(tmp_path / 'summary.json') as f:
    assert [r['train_type'] for r in json.load(f)['rows']] == names.split(',')


@pytest.mark.slow
def test_cbp_resumes_between_experiments_exactly(tiny_config, tmp_path):
  """Resumed before experiment 3, CBP counts its replacements from the steps
  of experiment 2 as recorded in the checkpoint: the same numbers."""
  tiny_config.train_type = 'cbp'
  tiny_config.cbp_replacement_rate = 0.01
  tiny_config.cbp_maturity_threshold = 0
  tiny_config.checkpoint_every_epochs = 0
  ref = helpers.numbers(dash_jax.run(tiny_config, str(tmp_path))['cbp-sgd-seed0'])
  run = tmp_path / 'cbp-sgd-seed0'
  saves = sorted((d for d in (run / 'checkpoints').iterdir() if d.name.isdigit()),
                 key=lambda d: int(d.name))
  assert len(saves) == 3  # after experiments 1, 2 and 3
  shutil.rmtree(saves[-1])
  (run / 'results.json').unlink()
  logs = []
  again = helpers.numbers(dash_jax.run(tiny_config, str(tmp_path), log=logs.append)['cbp-sgd-seed0'])
  assert any('resuming at experiment 3' in line for line in logs)
  assert again == ref


@pytest.mark.slow
def test_vmapped_seeds_match_plain_runs(tiny_config, tmp_path):
  """Seeds that converge at different epochs replace different numbers of
  units (CBP counts each seed's own steps); vmapped, each gets its plain numbers."""
  tiny_config.train_type = 'redo,cbp'
  tiny_config.seeds = '0,1,2'
  tiny_config.max_epoch = 12
  tiny_config.converge_acc = 0.55
  tiny_config.redo_tau = 0.9
  tiny_config.cbp_replacement_rate = 0.01
  tiny_config.cbp_maturity_threshold = 0
  plain = helpers.numbers_by_run(dash_jax.run(tiny_config, str(tmp_path / 'plain'), log=lambda *a: None))
  tiny_config.vmap_seeds = True
  vmapped = helpers.numbers_by_run(dash_jax.run(tiny_config, str(tmp_path / 'vmap'), log=lambda *a: None))
  helpers.close(plain, vmapped)
  assert len({tuple(e['steps'] for e in exps) for exps in plain.values()}) > 1
