"""One config per paper setting: each declares its setting and launch
command, validates, and survives a CPU smoke run on mock data.

The smoke runs swap ResNet-18 / VGG-16 for a width-16 MLP: a CPU runs those
convnets at seconds per step, and tests/test_models.py already steps each
real model. cifar10_mlp keeps its own model.
"""
import importlib
import json
import os

import jax
import jax.numpy as jnp
import pytest

from configs import paper
from dash_jax import models
from dash_jax.launch import config as config_lib
from dash_jax.launch import grid
from dash_jax.launch import runs
from tests import helpers

SETTINGS = {  # config: (dataset, model, sota)
    'cifar10_resnet18': ('cifar10', 'resnet18', False),
    'cifar100_resnet18': ('cifar100', 'resnet18', False),
    'svhn_resnet18': ('svhn', 'resnet18', False),
    'tiny_imagenet_resnet18': ('tiny_imagenet', 'resnet18', False),
    'cifar10_vgg16': ('cifar10', 'vgg16', False),
    'cifar10_mlp': ('cifar10', 'mlp', False),
    'cifar10_resnet18_sota': ('cifar10', 'resnet18', True),
    'cifar100_resnet18_sota': ('cifar100', 'resnet18', True),
    'tiny_imagenet_resnet18_sota': ('tiny_imagenet', 'resnet18', True),
}


def load(name):
  return importlib.import_module(f'configs.{name}')


def test_every_setting_has_a_config():
  files = {f[:-3] for f in os.listdir(os.path.join(helpers.ROOT, 'configs'))
           if f.endswith('.py') and f not in ('default.py', 'paper.py', '__init__.py')}
  assert set(SETTINGS) <= files


@pytest.mark.parametrize('name', sorted(SETTINGS))
def test_config_declares_its_setting(name):
  module = load(name)
  config = module.get_config()
  dataset, model, is_sota = SETTINGS[name]
  assert (config.dataset, config.model, config.sota) == (dataset, model, is_sota)
  assert f'python launch.py --config configs/{name}.py' in module.__doc__
  config_lib.validate(config)
  assert config.num_chunks == 50 and config.converge_acc == 0.999
  assert config.label_noise == 0.0 and config.batch_size == 128
  assert config.train_type == paper.TRAIN_TYPES and config.seeds == '2021'
  if is_sota:
    assert (config.learning_rate, config.weight_decay, config.max_epoch) == (0.1, 5e-4, 260)
    assert models.resolve_name(config.model, config.sota) == 'resnet18_sota'
    point = grid.Point('warm', 'sgd', 2021)  # what results.json records
    assert grid.run_fields(config, point)['model'] == 'resnet18_sota'
  else:
    assert (config.learning_rate, config.weight_decay, config.max_epoch) == (1e-3, 0.0, 10000)
    assert models.resolve_name(config.model, config.sota) == model
  if model == 'mlp':  # the paper's three-layer MLP: reset redraws its fc3
    assert (config.width, config.depth) == (1000, 3)
    module = models.get('mlp').build(config, 10)
    params = jax.eval_shape(lambda: module.init(
        jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)), train=False))['params']
    linears = [k for k in params if 'kernel' in params[k]]
    assert len(linears) == 3 and models.get('mlp').head == ('head',)


@pytest.mark.slow
@pytest.mark.parametrize('name', sorted(SETTINGS))
def test_smoke_run_on_mock_data(name, mock_tfds, tmp_path):
  config = load(name).get_config()
  config.data_dir = str(tmp_path / 'tfds')
  config.num_chunks, config.max_epoch, config.seeds = 2, 1, '0'
  # DASH once, where augmentation is on: its direction pass reads raw data.
  train_type = 'dash' if name == 'cifar10_resnet18_sota' else 'warm'
  config.train_type, config.optimizer = train_type, 'sgd'
  config.batch_size, config.test_batch_size = 32, 64
  config.progress = config.tensorboard = False  # execution only: no numbers change
  if config.model != 'mlp':
    config.model, config.width = 'mlp', 16
  with mock_tfds(num_examples=200):
    results = runs.run(config, str(tmp_path / 'run'), log=lambda *a: None)
  (run,) = results.values()
  assert [e['num_train'] for e in run['experiments']] == [100, 200]
  assert all(e['epochs'] == 1 and e['steps'] == -(-e['num_train'] // 32)
             for e in run['experiments'])
  with open(tmp_path / 'run' / f'{train_type}-sgd-seed0' / 'results.json') as f:
    saved = json.load(f)
  assert saved['config']['dataset'] == SETTINGS[name][0]
  assert saved['config']['sota'] == SETTINGS[name][2]
  assert (tmp_path / 'run' / 'summary.md').exists()
