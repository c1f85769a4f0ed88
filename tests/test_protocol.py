"""The experiment loop wires each training type in where the original does.

Spies record what the loop hands to the interventions and to training; the
checks recompute it independently (buffer order, labels, normalisation,
BatchNorm in evaluation mode), so a wrong wiring fails here.
"""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import dash_jax
from dash_jax import parallel, protocol, setup, sota, train, training_types
from dash_jax import data as data_lib
from dash_jax import settings as settings_lib
from dash_jax.launch import grid
from tests import helpers


@pytest.fixture
def spy(monkeypatch):
  """Events in order: ('train', j, params at its start) and, per spied
  training type, (name, j, state in, ctx, state out)."""
  events = []
  real_train = train.train_until_converged

  def train_spy(states, keys, inputs, opts, hooks=train.EpochHooks()):
    events.append(('train', hooks.experiment, train.take_seed(states, 0).params))
    return real_train(states, keys, inputs, opts, hooks)
  monkeypatch.setattr(train, 'train_until_converged', train_spy)

  def watch(name, hook):
    tt = training_types.TRAINING_TYPES[name]
    real = getattr(tt, hook)

    def fn(state, ctx):
      out = real(state, ctx)
      events.append((name, ctx.experiment, state, ctx, out))
      return out
    monkeypatch.setitem(training_types.TRAINING_TYPES, name,
                        dataclasses.replace(tt, **{hook: fn}))
  return events, watch


def _independent_direction(config, state, j, alpha):
  """EMA of -grad over chunks 1..j in buffer order, eval-mode BatchNorm,
  un-augmented normalised pixels, one chunk a batch."""
  ds = data_lib.load(config)
  labels = data_lib.noisy_labels(ds.train_y, config.label_noise, ds.num_classes, 0)
  buffer, chunk = setup.chunk_buffer(len(labels), config.num_chunks, 0)
  mean, std = setup.normalisation(config.normalize, config.model, ds)
  g = jax.tree.map(jnp.zeros_like, state.params)
  for i in range(j):
    idx = buffer[i * chunk:(i + 1) * chunk]
    x = (ds.train_x[idx].astype(np.float32) - mean) / std
    y = labels[idx]

    def loss(p):
      logits = state.apply_fn({'params': p, 'batch_stats': state.batch_stats}, x,
                              train=False)
      return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    g = jax.tree.map(lambda a, b: (1 - alpha) * a - alpha * b, g, jax.grad(loss)(state.params))
  return g


@pytest.mark.slow
def test_dash_shrinks_before_training_on_all_data_so_far(tiny_config, tmp_path, spy,
                                                         monkeypatch):
  events, watch = spy
  tiny_config.train_type = 'dash'
  tiny_config.num_chunks = 4
  tiny_config.dash_alpha = 0.5
  tiny_config.progress = False
  # Augment digits in training (SoTA recipe): the direction must not see it.
  monkeypatch.setitem(sota.AUGMENTATIONS, 'digits', ('flip',))
  tiny_config.sota = True
  watch('dash', 'before')
  dash_jax.run(tiny_config, str(tmp_path), log=lambda *a: None)

  kinds = [(e[0], e[1]) for e in events]
  assert kinds == [('train', 1), ('dash', 2), ('train', 2), ('dash', 3), ('train', 3),
                   ('dash', 4), ('train', 4)]
  for name, j, state_in, ctx, state_out in (e for e in events if e[0] == 'dash'):
    used = ctx.direction(state_in, ctx.hparams.alpha)
    want = _independent_direction(tiny_config, state_in, j, 0.5)
    for a, b in zip(jax.tree.leaves(used), jax.tree.leaves(want), strict=True):
      np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-6)
    # the experiment trains from exactly the shrunk weights
    trained_from = next(e[2] for e in events if e[:2] == ('train', j))
    for a, b in zip(jax.tree.leaves(trained_from), jax.tree.leaves(state_out.params)):
      np.testing.assert_array_equal(a, b)
    # and shrinking moved something (the check above is not vacuous)
    assert any(not np.array_equal(a, b) for a, b in
               zip(jax.tree.leaves(state_in.params), jax.tree.leaves(state_out.params)))


@pytest.mark.slow
def test_cold_redraws_everything_after_each_experiment(tiny_config, tmp_path, spy):
  events, watch = spy
  tiny_config.train_type = 'cold'
  tiny_config.progress = False
  watch('cold', 'after')
  dash_jax.run(tiny_config, str(tmp_path), log=lambda *a: None)
  colds = [e for e in events if e[0] == 'cold']
  assert [e[1] for e in colds] == [1, 2, 3]
  outs = [e[4] for e in colds]
  for a, b in ((outs[0], outs[1]), (outs[1], outs[2])):  # each re-init its own draw
    assert not np.allclose(a.params['fc1']['kernel'], b.params['fc1']['kernel'])
  for e in colds:
    state_in, out = e[2], e[4]
    assert int(out.step) == 0 and int(state_in.step) > 0
    assert all(np.all(np.asarray(t) == 0) for t in jax.tree.leaves(
        out.opt_state.inner_state[1].trace))  # fresh momentum
    assert any(np.any(np.asarray(t) != 0) for t in jax.tree.leaves(
        state_in.opt_state.inner_state[1].trace))
    # the next experiment trains from the fresh draw
    nxt = [x for x in events if x[:2] == ('train', e[1] + 1)]
    if nxt:
      for a, b in zip(jax.tree.leaves(nxt[0][2]), jax.tree.leaves(out.params)):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------ the core's entry: typed settings


def _hand_built(data_dir) -> settings_lib.RunSettings:
  """tiny_config's warm run, written as settings records: no config at all."""
  return settings_lib.RunSettings(
      train_type='warm', seed=0, hparams=None,
      model=settings_lib.ModelSettings('mlp', width=32, depth=2, precision='float32'),
      data=settings_lib.DataSettings('digits', str(data_dir), '', False, 0, 'train', 'test',
                                     0, 0),
      chunks=settings_lib.ChunkSettings(num_chunks=3, chunk_order='random', label_noise=0.2,
                                        normalize='auto', batch_size=128, last_batch='keep',
                                        test_batch_size=256),
      optim=settings_lib.OptimSettings('sgd', 0.01, 0.9, 0.0, rho=0.1, sam_bn_second_pass=True,
                                       sota=False, sota_milestones=(60, 120, 160, 200),
                                       sota_gamma=0.2),
      stop=settings_lib.StopRule(converge_acc=0.999, max_epoch=3),
      execution=settings_lib.Execution('auto', 0, 25, 3, 0.0),
      outputs=settings_lib.Outputs(progress=False, tensorboard=False, wandb=False,
                                   diagnostics=False))


@pytest.mark.slow
def test_the_core_runs_from_hand_built_settings_as_the_launch_does(tiny_config, tmp_path):
  """protocol.run_protocol takes settings.Run records and a dataset: built by
  hand they give the numbers of the launch, whose grid builds the same
  settings from the config."""
  tiny_config.progress = tiny_config.tensorboard = False
  hand = _hand_built(tiny_config.data_dir)
  assert grid.settings_of(tiny_config) == hand
  launched = dash_jax.run(tiny_config, str(tmp_path / 'launch'), lambda *a: None)
  run = settings_lib.Run('warm-sgd-seed0', str(tmp_path / 'core' / 'warm-sgd-seed0'), hand,
                         recorded={'note': 'the core writes this, never reads it'})
  with parallel.use_mesh(parallel.make_mesh(0)):
    [res] = protocol.run_protocol(data_lib.load(hand.data), [run], log=lambda *a: None)
  assert res['config'] == {'note': 'the core writes this, never reads it'}
  assert helpers.numbers(res) == helpers.numbers(launched['warm-sgd-seed0'])
