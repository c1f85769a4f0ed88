"""The DASH direction pass, batching and the convergence loop."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dash_jax import optim, train
from tests import helpers


@pytest.mark.slow
def test_direction_is_the_ema_of_a_plain_loop():
  state, data = helpers.mlp_setup()
  buffer_idx = jnp.asarray(np.random.default_rng(1).permutation(40).astype(np.int32))
  alpha, chunk = 0.3, 10
  got = train.full_data_direction(state, data, buffer_idx, 3, alpha, chunk_size=chunk)
  looped = train.full_data_direction(state, data, buffer_idx, 3, alpha, chunk_size=chunk,
                                     mode='loop')
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(looped)):  # either mode
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-8)
  g = jax.tree.map(jnp.zeros_like, state.params)
  for i in range(3):  # only the first 3 chunks of the buffer, oldest first
    idx = buffer_idx[i * chunk:(i + 1) * chunk]
    x = train.normalise(data['train_x'][idx], data['mean'], data['std'])
    def loss(p):
      logits = state.apply_fn({'params': p, 'batch_stats': state.batch_stats}, x, train=False)
      return optax.softmax_cross_entropy_with_integer_labels(logits, data['train_y'][idx]).mean()
    grad = jax.grad(loss)(state.params)
    g = jax.tree.map(lambda a, b: (1 - alpha) * a + alpha * (-b), g, grad)
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(g)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_epoch_order_is_a_permutation_of_the_first_n():
  buffer_idx = jnp.asarray(np.arange(100, 150, dtype=np.int32))
  order = np.asarray(train.epoch_order(jax.random.PRNGKey(0), buffer_idx, 17, 8))
  assert order.shape == (58,)
  assert sorted(order[:17]) == list(range(100, 117))


@pytest.mark.slow
def test_padded_final_batch_equals_a_short_batch():
  """Masked examples leave loss, gradients and BatchNorm stats untouched."""
  state, data = helpers.mlp_setup()
  x = train.normalise(data['train_x'], data['mean'], data['std'])
  y = data['train_y']
  short, m1 = train.train_step(state, x[:5], y[:5], jnp.ones(5), train.StepConfig())
  padded, m2 = train.train_step(state, x[:8], y[:8], (jnp.arange(8) < 5).astype(jnp.float32),
                                train.StepConfig())
  np.testing.assert_allclose(m1, m2, rtol=1e-5)
  for a, b in zip(jax.tree.leaves((short.params, short.batch_stats)),
                  jax.tree.leaves((padded.params, padded.batch_stats))):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_loop_and_scan_epochs_agree():
  state, data = helpers.mlp_setup()
  buffer_idx = jnp.arange(40, dtype=jnp.int32)
  kw = dict(step_cfg=train.StepConfig(), batch_size=16, max_epoch=3, converge_acc=1.0)
  s1, _, st1 = helpers.converge(state, jax.random.PRNGKey(3), data, buffer_idx, 37, mode='scan', **kw)
  state, data = helpers.mlp_setup()
  s2, _, st2 = helpers.converge(state, jax.random.PRNGKey(3), data, buffer_idx, 37, mode='loop', **kw)
  assert st1.steps == st2.steps == 9 and st1.epochs == 3
  np.testing.assert_allclose(st1.train_loss, st2.train_loss, rtol=1e-5)
  for a, b in zip(jax.tree.leaves(s1.params), jax.tree.leaves(s2.params)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_nonfinite_loss_stops_loudly():
  state, data = helpers.mlp_setup()
  state = state.replace(opt_state=optim.set_learning_rate(state.opt_state, 1e30))
  try:
    helpers.converge(state, jax.random.PRNGKey(0), data, jnp.arange(40, dtype=jnp.int32), 40,
              step_cfg=train.StepConfig(), batch_size=8, max_epoch=50,
              converge_acc=1.0, experiment=4)
  except train.NonFiniteLoss as e:
    assert 'experiment 4' in str(e) and 'learning_rate' in str(e)
  else:
    raise AssertionError('no NonFiniteLoss')


@pytest.mark.slow
def test_device_epochs_stop_where_the_host_loop_stops():
  """Epochs run on the device in calls of up to EPOCHS_PER_CALL; each
  experiment stops at the same epoch, with the same numbers, whether the
  device runs 1, 4 or 64 epochs a call, in blocks of 1 or 2 steps a host
  round trip, and as the per-step host loop."""
  kw = dict(step_cfg=train.StepConfig(), batch_size=16, max_epoch=40, converge_acc=0.6)
  runs = {}
  for name, mode, per_call, every, block in (
      ('1', 'scan', 1, 0, 1), ('64', 'scan', 64, 0, 1), ('4+ckpt', 'scan', 4, 6, 1),
      ('block2', 'scan', 64, 0, 2), ('loop', 'loop', 64, 0, 1)):
    state, data = helpers.mlp_setup()
    epochs, saved = [], []
    s, key, st = helpers.converge(
        state, jax.random.PRNGKey(3), data, jnp.arange(40, dtype=jnp.int32), 37,
        mode=mode, epochs_per_call=per_call, checkpoint_every=every, block=block,
        on_checkpoint=lambda s, k, p: saved.append(p.epochs),
        on_epoch=lambda e, acc, loss, s: epochs.append((e, acc, loss)), **kw)
    runs[name] = (st, epochs, s, key, saved)
  st, epochs, s, key, _ = runs['64']
  assert 1 < st.epochs < 40 and epochs[-1][1] >= 0.6 > max(a for _, a, _ in epochs[:-1])
  assert [e for e, _, _ in epochs] == list(range(1, st.epochs + 1))
  for other in ('1', '4+ckpt', 'block2', 'loop'):
    st2, epochs2, s2, key2, _ = runs[other]
    assert (st2.epochs, st2.steps) == (st.epochs, st.steps), other
    np.testing.assert_allclose(np.asarray(epochs2)[:, 1:], np.asarray(epochs)[:, 1:],
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(key2, key)
    for a, b in zip(jax.tree.leaves(s2.params), jax.tree.leaves(s.params)):
      np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
  assert runs['4+ckpt'][4] == [e for e in (6, 12, 18, 24, 30, 36) if e < st.epochs]


def test_device_threshold_matches_the_host_comparison():
  for c in (0.999, 0.6, 0.55, 1.0, 0.1, 0.3):
    t = train.device_threshold(c)
    for acc in np.nextafter(np.float32(c), np.float32([-1, 2]))[:, None] + [0]:
      for a in np.concatenate([acc, [np.float32(c)]]).astype(np.float32):
        assert (a >= t) == (float(a) >= c), (c, a, t)
