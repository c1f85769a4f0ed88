"""A run's pieces, built from its settings: model, optimizer, compiled step
choices, normalisation, chunk order and epoch mode; and a group's setup
(its data, states' maker and training options) built from them once.

Built objects are cached per setting: jit keys its cache on the model and
optimizer objects, so the runs of a launch share compiled programs.
"""
from __future__ import annotations

import dataclasses
import functools

import jax
import numpy as np

from dash_jax import batches, models, optim, parallel, sota, train, training_types
from dash_jax import data as data_lib
from dash_jax.errors import UserError
from dash_jax.settings import ChunkSettings, ModelSettings, OptimSettings, RunSettings

SCAN_BLOCK_ACCELERATOR = 16  # steps per host round trip of a compiled epoch off CPU


def epoch_mode(mode: str, model_name: str) -> str:
  """'scan' compiles an epoch into one loop, 'loop' calls a jitted step from
  Python; 'auto' is the model spec's choice for the backend."""
  if mode != 'auto':
    return mode
  return models.epoch_mode(model_name, jax.default_backend())


def scan_block(block: int = 0) -> int:
  """Steps per block of a compiled epoch (train._fori_epoch): `block`, or
  for 0, 1 on CPU, where a loop iteration costs no host round trip, and
  SCAN_BLOCK_ACCELERATOR elsewhere."""
  if block:
    return block
  return 1 if jax.default_backend() == 'cpu' else SCAN_BLOCK_ACCELERATOR


def normalisation(mode: str, model_name: str, ds):
  """(mean, std) the step applies as (x - mean) / std.

  Images, in pixel units: dataset statistics, or [0, 1] scaling for the MLP
  (the original code does not normalise there). Float features: per-feature
  statistics of the training split, or none. 'auto' is the dataset's choice
  (Dataset.auto_normalize: 'standard' for a user's images and features)."""
  if mode == 'auto' and ds.auto_normalize is not None:  # the dataset's own rule
    mode = ds.auto_normalize
  elif mode == 'auto' and not ds.is_image:
    mode = 'standard'
  elif mode == 'auto':  # the original normalises Tiny-ImageNet for every model
    mode = ('unit' if (model_name == 'mlp' and ds.name not in
                       ('digits', 'tiny_imagenet')) else 'standard')
  if mode == 'unit' and not ds.is_image:
    raise UserError(f"config.normalize='unit' scales pixels 0..255, and {ds.name} holds "
                    f"float features; use 'standard', 'none' or 'auto'")
  if mode == 'unit':
    return np.zeros_like(ds.mean), np.full_like(ds.std, 255.0)
  if mode == 'none':
    return np.zeros_like(ds.mean), np.ones_like(ds.std)
  return ds.mean, ds.std


@functools.lru_cache(maxsize=None)
def _optimizer(learning_rate, momentum, weight_decay):
  return optim.sgd(learning_rate, momentum, weight_decay)


def make_optimizer(optim_settings: OptimSettings):
  return _optimizer(optim_settings.learning_rate, optim_settings.momentum,
                    optim_settings.weight_decay)


@functools.lru_cache(maxsize=None)
def make_model(model: ModelSettings, num_classes: int):
  """One module object per setting: jit's caches key on it."""
  return models.get(model.model).build(model, num_classes)


def step_config(s: RunSettings, training_type: training_types.TrainingType,
                dataset_name: str) -> train.StepConfig:
  """What the run's training type, optimizer and recipe compile into the step."""
  return train.StepConfig(
      regularizer=training_type.regularizer_for(s.hparams),
      sam_rho=s.optim.rho if s.optim.optimizer == 'sam' else None,
      sam_bn_second_pass=s.optim.sam_bn_second_pass,
      augment=sota.augmentation(s.optim, dataset_name),
      lr_schedule=sota.lr_schedule(s.optim))


CHUNK_ORDERS = ('random', 'given')


def chunk_buffer(num_train, num_chunks, seed, order='random'):
  """Dataset indices in buffer order, chunk 1 first, in equal chunks
  (remainder dropped): order 'random' (the paper's) a seeded permutation;
  'given' the training split's own order, chunk k its k-th slice (data that
  arrived in time order replayed in that order; the seed plays no part)."""
  chunk_size = num_train // num_chunks
  if chunk_size < 1:
    raise UserError(f'num_chunks={num_chunks} exceeds the {num_train} training '
                    f'examples; lower --config.num_chunks')
  if order == 'given':
    idx = np.arange(num_train)
  elif order == 'random':
    idx = np.random.default_rng([seed, 0xC4A2]).permutation(num_train)
  else:
    raise UserError(f'unknown chunk_order {order!r}; valid: {", ".join(CHUNK_ORDERS)}')
  return idx[:chunk_size * num_chunks].astype(np.int32), chunk_size


def chunking(num_train, num_chunks, chunk_size) -> dict:
  """What chunk_buffer keeps of `num_train` training examples (results.json's
  'chunking'): num_chunks chunks of chunk_size, the remainder left out."""
  return {'train_examples': num_train, 'num_chunks': num_chunks,
          'chunk_size': chunk_size, 'left_out': num_train - num_chunks * chunk_size}


def check_input_shape(model_name, ds) -> None:
  """A convnet needs images (H, W, C) per example; the MLP takes any shape."""
  if model_name != 'mlp' and len(ds.input_shape) != 3:
    raise UserError(f'model {model_name!r} is a convnet and needs images (H, W, C) per '
                    f'example, but {ds.name} holds inputs of shape {tuple(ds.input_shape)} '
                    f'(N={len(ds.train_y)}); use --config.model=mlp')


@functools.lru_cache(maxsize=None)
def _batchnorm_values(model, input_shape):
  return models.batchnorm_values_per_channel(model, input_shape)


def one_value_batchnorm(model: ModelSettings, ds) -> bool:
  """Whether a training batch of one example gives some BatchNorm of the
  run's model one value per channel (an MLP's BatchNorm1d; not a convnet's
  BatchNorm2d over H x W > 1 values), which PyTorch refuses."""
  return _batchnorm_values(make_model(model, ds.num_classes), tuple(ds.input_shape)) == 1


def has_batchnorm(model: ModelSettings, ds) -> bool:
  """Whether the run's model normalises by batch statistics in training."""
  return _batchnorm_values(make_model(model, ds.num_classes), tuple(ds.input_shape)) is not None


def effective_batch_size(chunks: ChunkSettings, chunk_size) -> int:
  """A batch beyond the whole training set is that set, as a PyTorch
  DataLoader gives it: one batch an epoch, not one padded to batch_size."""
  return min(chunks.batch_size, chunks.num_chunks * chunk_size)


def batch_notes(s: RunSettings, ds, chunk_size) -> list[str]:
  """What the launch says about the run's epochs before training: the
  experiments whose epochs end in a small batch where the model has
  BatchNorm ('keep'), or whose last batch 'drop_small' leaves out."""
  chunks = s.chunks
  size = effective_batch_size(chunks, chunk_size)
  listed = batches.listing(chunk_size, chunks.num_chunks, size)
  if not listed or chunks.last_batch == 'balanced':
    return []
  if chunks.last_batch == 'drop_small':
    return [f'last_batch=drop_small leaves out each epoch\'s last batch at {listed}']
  if not has_batchnorm(s.model, ds):
    return []
  return [f'small last batches (under {batches.small_batch(size)} examples, batch_size={size}; '
          f'BatchNorm over them is noise, which can stall or derail those experiments): '
          f'{listed}; {batches.fix(chunk_size, chunks.num_chunks, size)}']


def check_batch_of_one(s: RunSettings, ds, chunk_size) -> None:
  """Refuse, before any compute, a run whose every batch (batch_size=1) or
  whose first experiment (chunks of one example) is a batch of one for a
  BatchNorm that would see one value per channel: PyTorch raises 'Expected
  more than 1 value per channel when training'; Flax would zero the layer's
  output and train at chance. (A last batch of one in a larger epoch is
  dropped instead: train.train_until_converged.)"""
  if not one_value_batchnorm(s.model, ds):
    return
  why = (f'BatchNorm in model {s.model.model} would normalise one value per channel in '
         f'training mode (PyTorch refuses: "Expected more than 1 value per channel when '
         f'training"; it would train at chance)')
  if s.chunks.batch_size == 1:
    raise UserError(f'config.batch_size=1: {why}; use --config.batch_size=2 or more')
  if chunk_size == 1:
    raise UserError(f'config.num_chunks={s.chunks.num_chunks} makes chunks of one example, '
                    f'so experiment 1 trains on batches of one: {why}; lower --config.num_chunks')


# ------------------------------------------------------------ a group's setup


@dataclasses.dataclass(frozen=True)
class Group:
  """What a group trains on and with, built once (setup_group). Labels,
  chunk orders, states and keys carry a leading seed axis; all of it lives
  on the launch's mesh."""
  runs: tuple  # settings.Run: one training type and optimizer, any seeds
  settings: RunSettings  # the first run's: what the group's runs share
  training_type: training_types.TrainingType
  model_spec: models.ModelSpec
  fresh_state: object  # key -> a brand-new TrainState
  options: train.TrainOptions
  data: dict  # train_x, train_y (S, N), mean, std
  buffer_idx: object  # (S, N): each seed's chunk order
  test: tuple  # (test_x, test_y)
  chunk_size: int
  mesh: object
  batchnorm: bool = False  # the model normalises by batch statistics in training

  @property
  def seeds(self) -> list[int]:
    return [r.seed for r in self.runs]

  @property
  def num_chunks(self) -> int:
    return self.settings.chunks.num_chunks

  def per_seed(self, fn, in_axes=0):
    return train.seed_map(fn, len(self.runs), in_axes)


def train_options(s: RunSettings, training_type, ds, chunk_size: int) -> train.TrainOptions:
  """How the group's epochs run: step, batches, stop rule, epoch mode."""
  return train.TrainOptions(
      step_config(s, training_type, ds.name), effective_batch_size(s.chunks, chunk_size),
      s.stop.max_epoch, s.stop.converge_acc,
      mode=epoch_mode(s.execution.epoch_mode, s.model.model),
      block=scan_block(s.execution.scan_block),
      epochs_per_call=1 if s.outputs.diagnostics else train.EPOCHS_PER_CALL,
      checkpoint_every=s.execution.checkpoint_every_epochs,
      # A last batch of one example is left out where BatchNorm would see
      # one value per channel (PyTorch raises there).
      drop_single=one_value_batchnorm(s.model, ds), last_batch=s.chunks.last_batch)


def setup_group(ds: data_lib.Dataset, runs) -> Group:
  """The group's data (noisy labels, chunk orders), model, optimizer and
  training options."""
  s = runs[0].settings
  mesh = parallel.current_mesh()  # set by the launch; data and state live on all of it
  mean, std = normalisation(s.chunks.normalize, s.model.model, ds)
  labels = np.stack([data_lib.noisy_labels(ds.train_y, s.chunks.label_noise,
                                           ds.num_classes, r.seed) for r in runs])
  buffers = [chunk_buffer(labels.shape[1], s.chunks.num_chunks, r.seed, s.chunks.chunk_order)
             for r in runs]
  chunk_size = buffers[0][1]
  training_type = training_types.get(s.train_type)  # looked up once, here
  options = train_options(s, training_type, ds, chunk_size)
  data = parallel.replicate({
      'train_x': ds.train_x, 'train_y': labels.astype(np.int32),
      'mean': mean.astype(np.float32), 'std': std.astype(np.float32)}, mesh)
  return Group(
      runs=tuple(runs), settings=s, training_type=training_type,
      model_spec=models.get(s.model.model),
      fresh_state=functools.partial(
          train.create_state, make_model(s.model, ds.num_classes), make_optimizer(s.optim),
          input_shape=ds.input_shape, keep_init=options.step_cfg.regularizer is not None),
      options=options, data=data,
      buffer_idx=parallel.replicate(np.stack([b for b, _ in buffers]), mesh),
      test=parallel.replicate((ds.test_x, ds.test_y.astype(np.int32)), mesh),
      chunk_size=chunk_size, mesh=mesh, batchnorm=has_batchnorm(s.model, ds))
