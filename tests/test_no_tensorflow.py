"""Where only JAX is installed (a GPU machine without TensorFlow wheels), the
package imports and a launch on prepared digits or random data runs: nothing
imports TensorFlow, tfds or torch unless a dataset must be read through tfds."""

import pytest

from tests import helpers

MODULES = ('dash_jax', 'dash_jax.launch.runs', 'dash_jax.protocol', 'dash_jax.setup',
           'dash_jax.dash', 'dash_jax.train', 'dash_jax.models', 'dash_jax.xla_cpu',
           'dash_jax.data', 'dash_jax.data.images', 'dash_jax.data.random_images',
           'dash_jax.launch.cli', 'dash_jax.launch.report', 'dash_jax.observers', 'dash_jax.provenance',
           'dash_jax.checkpoint', 'dash_jax.synthetic', 'dash_jax.parallel',
           'dash_jax.launch.tables', 'dash_jax.diagnostics', 'dash_jax.sota',
           'dash_jax.data.mnist1d', 'dash_jax.launch.fieldhelp')


@pytest.mark.slow
def test_imports_load_no_tensorflow_tfds_or_torch():
  code = ('import importlib, sys\n'
          f'for m in {MODULES!r}: importlib.import_module(m)\n'
          f'print(sorted(k for k in sys.modules if k.split(".")[0] in {helpers.BLOCKED!r}))')
  out = helpers.python(code)
  assert out.returncode == 0, out.stderr
  assert out.stdout.strip().splitlines()[-1] == '[]'


@pytest.mark.slow
def test_random_dataset_loads_with_tensorflow_blocked():
  code = helpers.BLOCKER + (
      'from configs.digits import get_config\n'
      'from dash_jax import data\n'
      'c = get_config(); c.dataset = "random_cifar_shape"\n'
      'ds = data.load(c); print(ds.train_x.shape, ds.test_x.shape)')
  out = helpers.python(code)
  assert out.returncode == 0, out.stderr
  assert out.stdout.strip() == '(50000, 32, 32, 3) (10000, 32, 32, 3)'


@pytest.mark.slow
def test_launch_on_prepared_digits_runs_with_tensorflow_blocked(tfds_dir, tmp_path):
  pytest.importorskip('tensorflow_datasets')  # to prepare the arrays here
  from configs.digits import get_config
  from dash_jax import data
  config = get_config()
  config.data_dir = tfds_dir
  data.load(config)  # keeps the arrays the blocked launch must read
  workdir = tmp_path / 'run'
  argv = ['launch.py', '--config', 'configs/digits.py', '--workdir', str(workdir),
          *helpers.tiny_flags(data_dir=tfds_dir, **helpers.SMALLER, train_type='dash',
                              progress=False)]
  code = helpers.BLOCKER + (f'import runpy; sys.argv = {argv!r}\n'
                    'runpy.run_path("launch.py", run_name="__main__")')
  out = helpers.python(code)
  assert out.returncode == 0, out.stderr[-3000:]
  assert (workdir / 'dash-sgd-seed0' / 'results.json').exists()
  assert 'No module named' not in out.stderr


def test_blocker_blocks():
  """The launch test means something only if the blocker really blocks."""
  pytest.importorskip('tensorflow_datasets')
  out = helpers.python(helpers.BLOCKER + 'import importlib.util\n'
                'assert importlib.util.find_spec("tensorflow") is None\n'
                'import tensorflow_datasets')
  assert out.returncode != 0, out.stderr
  assert "No module named 'tensorflow_datasets'" in out.stderr
