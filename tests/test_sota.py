"""The SoTA recipe: learning-rate schedule, augmentations (checked against
PIL, which torchvision uses), and both inside the jitted train step."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from configs.digits import get_config
from dash_jax import augment, models, optim, sota, train
from dash_jax.launch import grid


def test_schedule_warms_up_then_decays_each_experiment():
  lr = sota.WarmupMultiStep(0.1)
  at = lambda e, b, n=10: float(lr(e, b, n))
  assert at(0, 0) == 0.0  # the original's WarmUpLR: first step at lr 0
  assert np.isclose(at(0, 5), 0.05) and np.isclose(at(0, 9), 0.09)
  assert np.isclose(at(1, 0), 0.1) and np.isclose(at(59, 3), 0.1)
  for epoch, expected in [(60, 0.02), (119, 0.02), (120, 0.004), (160, 8e-4),
                          (200, 1.6e-4), (259, 1.6e-4)]:
    assert np.isclose(at(epoch, 0), expected, rtol=1e-5)
  config = get_config()
  optim = grid.settings_of(config).optim
  assert sota.lr_schedule(optim) is None and sota.augmentation(optim, 'cifar10') is None
  config.sota, config.learning_rate, config.sota_milestones = True, 0.5, '2,4'
  assert sota.lr_schedule(grid.settings_of(config).optim) == sota.WarmupMultiStep(0.5, (2, 4), 0.2)
  assert sota.augmentation(grid.settings_of(config).optim, 'cifar100').ops == ('crop', 'flip', 'rotate')
  assert sota.augmentation(grid.settings_of(config).optim, 'tiny_imagenet').ops == ('flip', 'resized_crop')
  assert sota.augmentation(grid.settings_of(config).optim, 'svhn') is None  # not augmented originally


def _images(n, size, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3)).astype(np.float32)


def test_crop_and_flip():
  x = _images(64, 8)
  crop = np.asarray(jax.jit(augment.random_crop)(jax.random.PRNGKey(0), jnp.asarray(x)))
  padded = np.pad(x, ((0, 0), (4, 4), (4, 4), (0, 0)))
  offsets = set()
  for img, out in zip(padded, crop):  # each output is one window of the padding
    hits = [(i, j) for i in range(9) for j in range(9)
            if np.array_equal(img[i:i + 8, j:j + 8], out)]
    assert hits
    offsets.add(hits[0])
  assert len(offsets) > 20
  flip = np.asarray(jax.jit(augment.random_flip)(jax.random.PRNGKey(1), jnp.asarray(x)))
  flipped = [np.array_equal(o, i[:, ::-1]) for o, i in zip(flip, x)]
  kept = [np.array_equal(o, i) for o, i in zip(flip, x)]
  assert all(f or k for f, k in zip(flipped, kept)) and 16 < sum(flipped) < 48


@pytest.mark.parametrize('degrees', [15.0, -15.0, 7.3, 90.0])
def test_rotation_matches_pil(degrees):
  img = _images(1, 32)[0].astype(np.uint8)
  ours = augment.rotate(jnp.asarray(img, jnp.float32)[None], jnp.deg2rad(jnp.array([degrees])))
  pil = Image.fromarray(img).rotate(degrees, resample=Image.NEAREST)
  np.testing.assert_array_equal(np.asarray(ours[0]), np.asarray(pil))


def test_resized_crop_matches_pil():
  img = _images(1, 64)[0].astype(np.uint8)
  resize = jax.jit(augment.resize_box)
  for top, left, h, w in [(0, 0, 64, 64), (5, 7, 20, 30), (30, 20, 34, 44)]:
    ours = np.asarray(resize(jnp.asarray(img, jnp.float32), top, left, h, w))
    pil = Image.fromarray(img).crop((left, top, left + w, top + h)).resize(
        (64, 64), Image.BILINEAR)
    assert np.abs(ours - np.asarray(pil, np.float32)).max() <= 1  # PIL rounds in ints
  box = lambda k: jnp.stack(augment._crop_box(k, 64, 64, (0.08, 1), (3 / 4, 4 / 3)))
  boxes = jax.jit(jax.vmap(box))(jax.random.split(jax.random.PRNGKey(0), 256))
  top, left, h, w = np.asarray(boxes).T
  assert (top >= 0).all() and (left >= 0).all() and (top + h <= 64).all() and (left + w <= 64).all()
  area = h * w / 64 ** 2
  assert area.min() >= 0.07 and area.max() <= 1 and 0.3 < area.mean() < 0.8


def test_augment_pipeline_is_seeded():
  x = jnp.asarray(_images(4, 16))
  aug = jax.jit(augment.Augment(('crop', 'flip', 'rotate')))
  a, b = aug(jax.random.PRNGKey(0), x), aug(jax.random.PRNGKey(0), x)
  c = aug(jax.random.PRNGKey(1), x)
  assert bool(jnp.all(a == b)) and not bool(jnp.all(a == c))
  assert a.shape == x.shape and float(a.min()) >= 0 and float(a.max()) <= 255


@pytest.mark.slow
def test_recipe_inside_the_step_same_in_loop_and_scan_modes():
  """First step of an experiment has lr 0 (weights unchanged), the rest
  train; augmentation draws depend on (key, batch), not on the epoch mode."""
  config = get_config()
  config.width, config.sota = 16, True
  model = models.get('mlp').build(config, 10)
  tx = optim.sgd(0.1, 0.9, 5e-4)
  state = train.create_state(model, tx, jax.random.PRNGKey(0), (8, 8, 3), False)
  rng = np.random.default_rng(0)
  data = {'train_x': jnp.asarray(rng.integers(0, 256, (24, 8, 8, 3)), jnp.uint8),
          'train_y': jnp.asarray(rng.integers(0, 10, 24), jnp.int32),
          'mean': jnp.full((3,), 120.0), 'std': jnp.full((3,), 60.0)}
  step_cfg = train.StepConfig(augment=augment.Augment(('crop', 'flip')),
                              lr_schedule=sota.WarmupMultiStep(0.1))
  buffer_idx = jnp.arange(24, dtype=jnp.int32)
  epoch_key = jax.random.split(jax.random.PRNGKey(3))[1]  # as train_until_converged draws
  order = train.epoch_order(epoch_key, buffer_idx, 20, 8)
  key = jax.random.fold_in(epoch_key, 1)
  copy = lambda s: jax.tree.map(jnp.copy, s)

  epoch = train.Epoch(data, order, 20, num_batches=3, number=0, key=key)
  layout = train.Layout(step_cfg, batch_size=8)
  first, _ = train.loop_step(copy(state), jnp.zeros(2), epoch, 0, layout=layout)
  assert jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.all(a == b)),
                                   first.params, state.params))
  assert not jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.all(a == b)),
                                       first.batch_stats, state.batch_stats))
  assert np.isclose(float(first.opt_state.hyperparams['learning_rate']), 0.0)

  looped, sums = copy(state), jnp.zeros(2)
  for b in range(3):
    looped, sums = train.loop_step(looped, sums, epoch, b, layout=layout)
  group = lambda tree: jax.tree.map(lambda x: x[None], tree)  # one seed
  for block in (1, 2):  # the compiled epoch, one step or two a block
    scanned, _, _, metrics, _ = train.device_epochs(
        group(copy(state)), group(jax.random.PRNGKey(3)), jnp.ones((1,), bool),
        train.EpochSource(dict(data, train_y=data['train_y'][None]), buffer_idx[None], 20, 3),
        train.CallBounds(0, 1, 2.0), layout=train.Layout(step_cfg, 8, block))
    scanned, scan_sums = train.take_seed(scanned, 0), metrics[0, 0] * 3
    close = jax.tree.map(functools.partial(np.allclose, atol=1e-5), looped.params,
                         scanned.params)
    assert jax.tree.all(close) and np.allclose(sums, scan_sums, atol=1e-5)
  assert np.isclose(float(looped.opt_state.hyperparams['learning_rate']), 0.1 * 2 / 3)
  assert not jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.all(a == b)),
                                       looped.params, state.params))
  # The step's batch is augmented (DASH's direction pass reads the raw
  # buffer through its own batching, with no augmentation).
  batch = jax.jit(train._train_batch, static_argnums=(3, 4))
  aug_key = jax.random.split(jax.random.fold_in(key, 0))[0]
  span = train._batch_span(0, 20, 8, 3, False)
  x_aug = batch(data, order, span, 8, step_cfg.augment, aug_key)[0]
  x_raw = batch(data, order, span, 8, None, aug_key)[0]
  assert x_aug.shape == x_raw.shape and not bool(jnp.all(x_aug == x_raw))
