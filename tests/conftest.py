"""Shared test set-up: CPU, fast compiles, one digits build per session."""
import os
import sys

os.environ.setdefault('JAX_PLATFORMS', 'cpu')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '0')
# Tiny models: compile time dominates, so skip most XLA optimisation passes;
# through the environment too, so that processes a test starts (packed
# workers) compile the same programs, to the same numbers.
os.environ.setdefault('JAX_DISABLE_MOST_OPTIMIZATIONS', 'true')

import jax
import pytest

from tests import helpers

# Tiny models: compile time dominates, so skip most XLA optimisation passes.
jax.config.update('jax_disable_most_optimizations', True)


@pytest.fixture(scope='session')
def tfds_dir(tmp_path_factory):
  """A tfds data dir holding the digits dataset, built once, offline.
  Tests that need it skip where tfds is not installed (GPU machines)."""
  pytest.importorskip('tensorflow_datasets')
  path = str(tmp_path_factory.mktemp('tfds'))
  from dash_jax.data.digits import DashDigits
  DashDigits(data_dir=path).download_and_prepare()
  return path


@pytest.fixture
def tiny_config(tfds_dir):
  """The default config shrunk to seconds (helpers.TINY): few chunks, few epochs."""
  return helpers.tiny_config(tfds_dir)


@pytest.fixture
def mock_tfds():
  """tfds.testing.mock_data as a factory: random examples shaped like each
  dataset's features, and every builder reported as prepared (the mock
  leaves `is_prepared` alone, and the loaders refuse unprepared data)."""
  import contextlib
  from unittest import mock
  tfds = pytest.importorskip('tensorflow_datasets')

  @contextlib.contextmanager
  def mocked(num_examples):
    with tfds.testing.mock_data(num_examples=num_examples), mock.patch.object(
        tfds.core.DatasetBuilder, 'is_prepared', return_value=True):
      yield
  return mocked


@pytest.fixture
def launch_in_process(monkeypatch, capsys):
  """`python launch.py ARGS` (dash_jax.launch.cli.main, as the `dash-jax` command)
  called in this process: (exit code, stdout, stderr). For what a launch
  says about bad input; tests of signals, imports or a second process start
  a real one. The process-wide set-up main() does for a real launch (signal
  handlers, absl's logging handler) is left out here."""
  from absl import logging as absl_logging

  from dash_jax import signals
  from dash_jax.launch import cli
  monkeypatch.setattr(signals, 'install', lambda quiet=False: None)
  monkeypatch.setattr(absl_logging, 'use_absl_handler', lambda: None)
  verbosity = absl_logging.get_verbosity()

  def launch(*args):
    capsys.readouterr()
    # ml_collections loads the config file as module 'config_config' and
    # would run the next file into the same module: a process holds none yet.
    monkeypatch.delitem(sys.modules, 'config_config', raising=False)
    try:
      cli.main(['launch.py', *map(str, args)])
      code = 0
    except SystemExit as e:
      code = e.code
    finally:
      absl_logging.set_verbosity(verbosity)
    out, err = capsys.readouterr()
    return code, out, err
  return launch


def pytest_collection_modifyitems(config, items):
  """Slow tests first (stable: each worker of pytest-xdist sees one order), so
  the long ones do not start last and leave the other workers idle."""
  items.sort(key=lambda item: item.get_closest_marker('slow') is None)
