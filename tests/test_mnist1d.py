"""MNIST-1D: the benchmark's own data, generated offline in NumPy (no
TensorFlow), kept as float32 signals, its generator in provenance; the tfds
builder gives the same arrays."""
import json
import os

import numpy as np
import pytest

from dash_jax import data
from tests import helpers


@pytest.fixture(scope='module')
def m1d_dir(tmp_path_factory):
  pytest.importorskip('mnist1d')
  path = str(tmp_path_factory.mktemp('m1d'))
  data.load(_config(path))  # generates once and keeps the arrays
  return path


def _config(data_dir, **overrides):
  from configs.default import get_config
  config = get_config()
  config.data_dir = str(data_dir)
  config.dataset = 'mnist1d'
  config.update(overrides)
  return config


def test_data_equal_the_packages_make_dataset(m1d_dir):
  from mnist1d.data import get_dataset_args, make_dataset
  ref = make_dataset(get_dataset_args())
  ds = data.load(_config(m1d_dir))
  assert ds.train_x.dtype == np.float32 and ds.train_x.shape == (4000, 40)
  assert ds.train_y.dtype == np.int32 and ds.test_y.dtype == np.int32
  assert ds.test_x.shape == (1000, 40) and ds.num_classes == 10
  np.testing.assert_array_equal(ds.train_x, ref['x'].astype(np.float32))
  np.testing.assert_array_equal(ds.test_x, ref['x_test'].astype(np.float32))
  np.testing.assert_array_equal(ds.train_y, ref['y'])
  np.testing.assert_array_equal(ds.test_y, ref['y_test'])
  assert not ds.is_image


def test_recorded_generator_args_are_the_packages_defaults():
  """provenance.dataset reads MNIST1D_ARGS without importing mnist1d; they
  must be what the generator used."""
  pytest.importorskip('mnist1d')
  from dash_jax.data.mnist1d import generator_args
  assert generator_args() == data.MNIST1D_ARGS


def test_tfds_builder_gives_the_same_arrays(m1d_dir, tmp_path):
  """The tfds builder, for those who want one, builds the same data; a data
  dir where a launch kept its arrays still takes a tfds build (the arrays
  are not in the builder's folder), and arrays kept beside a tfds build by
  earlier versions are read first."""
  pytest.importorskip('tensorflow_datasets')
  from dash_jax.data.base import tfds_split_arrays
  from dash_jax.data.mnist1d_tfds import DashMnist1d
  assert DashMnist1d.name == data.MNIST1D_NAME
  assert str(DashMnist1d.VERSION) == data.MNIST1D_VERSION
  ds = data.load(_config(m1d_dir))
  builder = DashMnist1d(data_dir=m1d_dir)
  builder.download_and_prepare()
  assert builder.is_prepared()
  x, y = tfds_split_arrays(builder, 'train')  # keeps them in the tfds folder
  np.testing.assert_array_equal(x, ds.train_x)
  np.testing.assert_array_equal(y, ds.train_y)
  assert x.dtype == ds.train_x.dtype and y.dtype == ds.train_y.dtype
  tfds_folder, own = data.mnist1d_folders(_config(m1d_dir))
  assert os.path.isfile(os.path.join(own, 'dash_jax-train.npz'))
  assert os.path.isfile(os.path.join(tfds_folder, 'dash_jax-train.npz'))


def test_kept_arrays_are_read_without_generating(m1d_dir, monkeypatch):
  from dash_jax.data import mnist1d
  def refuse(*a, **k):
    raise AssertionError('generated again')
  monkeypatch.setattr(mnist1d, 'mnist1d_arrays', refuse)
  ds = data.load(_config(m1d_dir))
  assert ds.train_x.shape == (4000, 40)


def test_unwritable_data_dir_still_loads(tmp_path, monkeypatch):
  """A read-only data dir: the arrays are generated each launch, not kept."""
  pytest.importorskip('mnist1d')
  from dash_jax.data import base
  blocked = tmp_path / 'file'
  blocked.write_text('')  # a file where the data dir's folder should go
  ds = data.load(_config(blocked))
  assert ds.train_x.shape == (4000, 40)
  assert not base.write_cache(str(blocked / 'x' / 'a.npz'), ds.test_x, ds.test_y)


def test_auto_normalisation_feeds_signals_as_generated(m1d_dir):
  """MNIST-1D is generated standardised: 'auto' means none; 'standard' is
  per-feature; 'unit' (pixels to [0, 1]) is refused for features."""
  ds = data.load(_config(m1d_dir))
  mean, std = helpers.normalisation(_config(m1d_dir), ds)
  assert mean.shape == (40,) and not mean.any() and (std == 1).all()
  mean, std = helpers.normalisation(_config(m1d_dir, normalize='standard'), ds)
  np.testing.assert_allclose(mean, ds.train_x.mean(0), atol=1e-5)
  np.testing.assert_allclose(std, ds.train_x.std(0), rtol=1e-4)
  from dash_jax.errors import UserError
  with pytest.raises(UserError, match="normalize='unit'"):
    helpers.normalisation(_config(m1d_dir, normalize='unit'), ds)


@pytest.mark.slow
def test_launch_runs_with_tensorflow_blocked_and_records_the_generator(m1d_dir, tmp_path):
  workdir = tmp_path / 'run'
  argv = ['launch.py', '--config', 'configs/default.py', '--workdir', str(workdir),
          *helpers.tiny_flags(data_dir=m1d_dir, dataset='mnist1d', **helpers.SMALLER,
                              train_type='dash', progress=False, tensorboard=False,
                              runs_per_device=1)]
  code = helpers.BLOCKER + (f'import runpy; sys.argv = {argv!r}\n'
                    'try:\n'
                    '  runpy.run_path("launch.py", run_name="__main__")\n'
                    'finally:\n'
                    '  print(sorted(k for k in sys.modules if k.split(".")[0] == "mnist1d"))')
  out = helpers.python(code)
  assert out.returncode == 0, out.stderr[-3000:]
  assert out.stdout.strip().splitlines()[-1] == '[]'  # the generator is not imported
  with open(workdir / 'dash-sgd-seed0' / 'results.json') as f:
    res = json.load(f)
  source = res['provenance']['dataset']
  assert source['name'] == 'mnist1d' and source['args'] == data.MNIST1D_ARGS
  assert source['mnist1d_version']
  assert len(res['experiments']) == 2
