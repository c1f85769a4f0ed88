"""A run's pieces, built from its config: model, optimizer, compiled step
choices, normalisation, chunk order and epoch mode.

Built objects are cached per setting: jit keys its cache on the model and
optimizer objects, so the runs of a launch share compiled programs.
"""
from __future__ import annotations

import functools
import json

import jax
import numpy as np

from dash_jax import batches, models, optim, sota, train, training_types
from dash_jax.launch import config as config_lib
from dash_jax.errors import UserError

SCAN_BLOCK_ACCELERATOR = 16  # steps per host round trip of a compiled epoch off CPU


def epoch_mode(config) -> str:
  """'scan' compiles an epoch into one loop, 'loop' calls a jitted step from
  Python; 'auto' is the model spec's choice for the backend."""
  if config.epoch_mode != 'auto':
    return config.epoch_mode
  return models.epoch_mode(config.model, jax.default_backend())


def scan_block(config) -> int:
  """Steps per block of a compiled epoch (train._fori_epoch): 1 on CPU, where
  a loop iteration costs no host round trip; SCAN_BLOCK_ACCELERATOR elsewhere."""
  if config.scan_block:
    return config.scan_block
  return 1 if jax.default_backend() == 'cpu' else SCAN_BLOCK_ACCELERATOR


def normalisation(config, ds):
  """(mean, std) the step applies as (x - mean) / std.

  Images, in pixel units: dataset statistics, or [0, 1] scaling for the MLP
  (the original code does not normalise there). Float features: per-feature
  statistics of the training split, or none. 'auto' is the dataset's choice
  (Dataset.auto_normalize: 'standard' for a user's images and features)."""
  mode = config.normalize
  if mode == 'auto' and ds.auto_normalize is not None:  # the dataset's own rule
    mode = ds.auto_normalize
  elif mode == 'auto' and not ds.is_image:
    mode = 'standard'
  elif mode == 'auto':  # the original normalises Tiny-ImageNet for every model
    mode = ('unit' if (config.model == 'mlp' and ds.name not in
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


def make_optimizer(config):
  return _optimizer(config.learning_rate, config.momentum, config.weight_decay)


@functools.lru_cache(maxsize=None)
def _model(name, config_json, num_classes):
  import ml_collections
  config = ml_collections.ConfigDict(json.loads(config_json))
  return models.get(name).build(config, num_classes)


def make_model(config, num_classes):
  return _model(config.model, config.to_json(), num_classes)


def step_config(config, train_type: str, dataset_name: str) -> train.StepConfig:
  """What the run's training type, optimizer and recipe compile into the step."""
  return train.StepConfig(
      regularizer=training_types.get(train_type).regularizer_for(config),
      sam_rho=config.rho if config.optimizer == 'sam' else None,
      sam_bn_second_pass=config.sam_bn_second_pass,
      augment=sota.augmentation(config, dataset_name),
      lr_schedule=sota.lr_schedule(config))


CHUNK_ORDERS = config_lib.CHUNK_ORDERS


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


def one_value_batchnorm(config, ds) -> bool:
  """Whether a training batch of one example gives some BatchNorm of the
  run's model one value per channel (an MLP's BatchNorm1d; not a convnet's
  BatchNorm2d over H x W > 1 values), which PyTorch refuses."""
  return _batchnorm_values(make_model(config, ds.num_classes), tuple(ds.input_shape)) == 1


def has_batchnorm(config, ds) -> bool:
  """Whether the run's model normalises by batch statistics in training."""
  return _batchnorm_values(make_model(config, ds.num_classes), tuple(ds.input_shape)) is not None


def effective_batch_size(config, chunk_size) -> int:
  """A batch beyond the whole training set is that set, as a PyTorch
  DataLoader gives it: one batch an epoch, not one padded to batch_size."""
  return min(config.batch_size, config.num_chunks * chunk_size)


def batch_notes(config, ds, chunk_size) -> list[str]:
  """What the launch says about the run's epochs before training: the
  experiments whose epochs end in a small batch where the model has
  BatchNorm ('keep'), or whose last batch 'drop_small' leaves out."""
  size = effective_batch_size(config, chunk_size)
  listed = batches.listing(chunk_size, config.num_chunks, size)
  if not listed or config.last_batch == 'balanced':
    return []
  if config.last_batch == 'drop_small':
    return [f'last_batch=drop_small leaves out each epoch\'s last batch at {listed}']
  if not has_batchnorm(config, ds):
    return []
  return [f'small last batches (under {batches.small_batch(size)} examples, batch_size={size}; '
          f'BatchNorm over them is noise, which can stall or derail those experiments): '
          f'{listed}; {batches.fix(chunk_size, config.num_chunks, size)}']


def check_batch_of_one(config, ds, chunk_size) -> None:
  """Refuse, before any compute, a run whose every batch (batch_size=1) or
  whose first experiment (chunks of one example) is a batch of one for a
  BatchNorm that would see one value per channel: PyTorch raises 'Expected
  more than 1 value per channel when training'; Flax would zero the layer's
  output and train at chance. (A last batch of one in a larger epoch is
  dropped instead: train.train_until_converged.)"""
  if not one_value_batchnorm(config, ds):
    return
  why = (f'BatchNorm in model {config.model} would normalise one value per channel in '
         f'training mode (PyTorch refuses: "Expected more than 1 value per channel when '
         f'training"; it would train at chance)')
  if config.batch_size == 1:
    raise UserError(f'config.batch_size=1: {why}; use --config.batch_size=2 or more')
  if chunk_size == 1:
    raise UserError(f'config.num_chunks={config.num_chunks} makes chunks of one example, '
                    f'so experiment 1 trains on batches of one: {why}; lower --config.num_chunks')
