"""A user's own data through the protocol: npz files (uint8 images, float
features), an image folder of PNGs, tfds names (a builder prepared in a temp
dir, and mock data), chunk_order='given', the file guard, and one test per
bad input (one line on stderr, exit 2, nothing written)."""
import json
import os
import sys
import re
import shlex

import numpy as np
import pytest
from PIL import Image

import dash_jax
from dash_jax import data, results, setup
from dash_jax.errors import UserError
from dash_jax.launch import cli
from tests import helpers

# The tiny config, smaller still, with no progress bars or TensorBoard files.
TINY = helpers.tiny_flags(**helpers.SMALLER, progress=False, tensorboard=False)


def launch_argv(argv):
  """`python launch.py ARGV` as a function call (dash_jax.launch.cli's parse and
  launch, no signal handlers): its exit code (0 when it returns)."""
  from absl import flags
  cli._define_flags()  # the --config and --workdir flags, once a process
  for name in [n for n in flags.FLAGS if n.startswith('config.')]:
    delattr(flags.FLAGS, name)  # a previous call's overrides: defined again by this parse
  sys.modules.pop('config_config', None)  # ml_collections' module of the last config file
  try:
    cli._launch(cli.parse_flags(['launch.py', *cli.resolve_config_arg(argv)]))
  except SystemExit as e:
    return e.code
  return 0


def launch_main(workdir, *overrides, config='configs/digits.py'):
  return launch_argv(['--config', os.path.join(helpers.ROOT, config), '--workdir', str(workdir),
                      *TINY, *overrides])


# --------------------------------------------------------------- readers


def test_npz_float_features_kept_as_float32_with_per_feature_stats(tmp_path):
  path = helpers.write_npz(tmp_path / 'f.npz')
  for name in (path, f'npz:{path}'):
    ds = data.load(helpers.user_config(name))
    assert ds.train_x.dtype == np.float32 and ds.train_x.shape == (60, 6)
    assert not ds.is_image and ds.num_classes == 3 and ds.name == name
    x = helpers.features(60)[0]
    np.testing.assert_array_equal(ds.train_x, x.astype(np.float32))  # no quantisation
    np.testing.assert_allclose(ds.mean, x.mean(0), rtol=1e-6)
    np.testing.assert_allclose(ds.std, x.std(0), rtol=1e-6)
    mean, std = helpers.normalisation(helpers.user_config(name), ds)  # auto = standard
    np.testing.assert_array_equal(mean, ds.mean)
    mean, std = helpers.normalisation(helpers.user_config(name, normalize='none'), ds)
    assert not mean.any() and (std == 1).all()
  with open(path, 'rb') as f:
    import hashlib
    digest = hashlib.sha256(f.read()).hexdigest()
  assert ds.source == {'kind': 'npz', 'path': path, 'size': os.path.getsize(path),
                       'sha256': digest, 'arrays': ds.source['arrays']}
  assert ds.source['arrays']['x_train'] == [[60, 6], 'float64']
  assert data.fingerprint(path) == digest
  assert data.fingerprint('digits') == ''
  with pytest.raises(UserError, match="normalize='unit'"):
    helpers.normalisation(helpers.user_config(path, normalize='unit'), ds)


def test_npz_images_get_a_channel_axis_and_num_classes(tmp_path):
  rng = np.random.default_rng(0)
  x = rng.integers(0, 256, (40, 5, 7), dtype=np.uint8)
  y = np.arange(40) % 4
  path = helpers.write_npz(tmp_path / 'i.npz', x_train=x, y_train=y, x_test=x[:8], y_test=y[:8])
  ds = data.load(helpers.user_config(path))
  assert ds.is_image and ds.train_x.shape == (40, 5, 7, 1) and ds.num_classes == 4
  assert ds.input_shape == (5, 7, 1)
  np.testing.assert_allclose(ds.mean, [x.mean()], rtol=1e-6)
  setup.check_input_shape('resnet18', ds)  # images: a convnet fits
  rgb = rng.integers(0, 256, (40, 4, 4, 3), dtype=np.uint8)
  path = helpers.write_npz(tmp_path / 'rgb.npz', x_train=rgb, y_train=y, x_test=rgb[:4], y_test=y[:4])
  ds = data.load(helpers.user_config(path))
  assert ds.train_x.shape == (40, 4, 4, 3) and ds.mean.shape == (3,) and ds.num_classes == 4
  mean, std = helpers.normalisation(helpers.user_config(path), ds)  # auto: standard, also for the MLP
  np.testing.assert_array_equal(mean, ds.mean)


def test_num_classes_above_the_labels_leaves_a_class_empty(tmp_path):
  path = helpers.write_npz(tmp_path / 'f.npz')
  with pytest.raises(UserError, match='classes 3 of 0..3 have no training example'):
    data.load(helpers.user_config(path, num_classes=4))
  with pytest.raises(UserError, match='holds label 2, but config.num_classes=2'):
    data.load(helpers.user_config(path, num_classes=2))


def test_image_folder_of_pngs(tmp_path):
  path = helpers.write_folder(tmp_path / 'imgs')
  ds = data.load(helpers.user_config(f'folder:{path}'))
  assert ds.train_x.shape == (6, 6, 6, 3) and ds.test_x.shape == (4, 6, 6, 3)
  assert ds.is_image and ds.num_classes == 2
  assert ds.train_y.tolist() == [0, 0, 0, 1, 1, 1]  # sorted: class, then file name
  assert ds.train_x[:, 0, 0, 0].tolist() == [10, 20, 30, 110, 120, 130]
  assert ds.source['kind'] == 'folder' and ds.source['files'] == 10
  assert ds.source['classes'] == ['cat', 'dog'] and len(ds.source['sha256']) == 64
  grey = helpers.write_folder(tmp_path / 'grey', mode='L', size=(5, 3))
  ds = data.load(helpers.user_config(f'folder:{grey}'))
  assert ds.train_x.shape == (6, 3, 5, 1)
  (tmp_path / 'grey' / 'train' / 'cat' / '9.png').unlink(missing_ok=True)
  Image.new('L', (9, 9), 7).save(tmp_path / 'grey' / 'train' / 'cat' / '9.png')
  with pytest.raises(UserError, match='images differ in size .*--config.image_size'):
    data.load(helpers.user_config(f'folder:{grey}'))
  ds = data.load(helpers.user_config(f'folder:{grey}', image_size=4))
  assert ds.train_x.shape == (7, 4, 4, 1) and ds.source['image_size'] == 4


@pytest.mark.slow
def test_tfds_name_through_a_builder_prepared_in_a_temp_dir(tfds_dir):
  digits = data.load(helpers.user_config('digits', tfds_dir))
  ds = data.load(helpers.user_config('tfds:dash_digits', tfds_dir))
  np.testing.assert_array_equal(ds.train_x, digits.train_x)
  np.testing.assert_array_equal(ds.test_y, digits.test_y)
  assert ds.num_classes == 10 and ds.source['name'] == 'dash_digits'
  assert ds.source['version'] == '1.0.0' and ds.source['supervised_keys'] == ['image', 'label']
  half = data.load(helpers.user_config('tfds:dash_digits', tfds_dir, train_split='train[:50%]',
                           test_split='test[:10]'))
  assert len(half.train_y) == 629 and len(half.test_y) == 10
  np.testing.assert_array_equal(half.train_x, digits.train_x[:629])
  with pytest.raises(UserError, match="config.train_split='tran' is not a split of it"):
    data.load(helpers.user_config('tfds:dash_digits', tfds_dir, train_split='tran'))


@pytest.mark.slow
def test_tfds_name_under_mock_data(mock_tfds, tmp_path):
  with mock_tfds(num_examples=30):
    ds = data.load(helpers.user_config('tfds:mnist', tmp_path))
  assert ds.train_x.shape == (30, 28, 28, 1) and ds.num_classes == 10


# --------------------------------------------------------------- through launch.py


def _results(workdir, name='warm-sgd-seed0'):
  with open(os.path.join(workdir, name, results.RESULTS)) as f:
    return json.load(f)


def _strip(res):
  return [{k: v for k, v in e.items() if k not in results.EXECUTION_RECORD_FIELDS}
          for e in res['experiments']]


@pytest.mark.slow
def test_digits_from_an_npz_give_the_builtin_digits_numbers(tiny_config, tmp_path):
  """Same seeds, same config: the built-in digits and the same arrays from a
  file (images saved (N, 8, 8), without the channel axis) train identically."""
  ds = data.load(tiny_config)
  path = str(tmp_path / 'digits.npz')
  np.savez(path, x_train=ds.train_x[..., 0], y_train=ds.train_y, x_test=ds.test_x,
           y_test=ds.test_y)
  tiny_config.train_type = 'warm,dash'
  builtin = dash_jax.run(tiny_config, str(tmp_path / 'builtin'), lambda *_: None)
  tiny_config.dataset = path
  mine = dash_jax.run(tiny_config, str(tmp_path / 'mine'), lambda *_: None)
  for name in ('warm-sgd-seed0', 'dash-sgd-seed0'):
    assert _strip(mine[name]) == _strip(builtin[name])
    assert len(mine[name]['experiments']) == 3
  assert mine['dash-sgd-seed0']['provenance']['dataset']['sha256'] == \
      mine['dash-sgd-seed0']['config']['dataset_sha256']


@pytest.mark.slow
def test_float_features_npz_through_launch_py(tmp_path, capsys):
  path = helpers.write_npz(tmp_path / 'table.npz')
  work = tmp_path / 'w'
  assert launch_main(work, f'--config.dataset={path}', '--config.train_type=cold,dash') == 0
  res = _results(work, 'dash-sgd-seed0')
  assert res['provenance']['dataset']['sha256'] == res['config']['dataset_sha256']
  assert res['provenance']['dataset']['path'] == path
  with open(work / 'dash-sgd-seed0' / results.RUN_CONFIG) as f:
    assert json.load(f)['dataset_sha256'] == res['config']['dataset_sha256']
  assert os.path.exists(work / 'report.md') and os.path.exists(work / 'summary.md')
  # The file changes: relaunching into the workdir is refused, naming it.
  x, y = helpers.features(60, seed=5)
  helpers.write_npz(tmp_path / 'table.npz', x_train=x)
  capsys.readouterr()
  assert launch_main(work, f'--config.dataset={path}', '--config.train_type=cold,dash') == 2
  err = capsys.readouterr().err
  assert err.count('\n') == 1 and f'contents of {path} changed: sha256' in err, err


@pytest.mark.slow
def test_uint8_images_npz_with_a_convnet(tmp_path):
  rng = np.random.default_rng(0)
  x = rng.integers(0, 256, (24, 8, 8), dtype=np.uint8)
  y = np.arange(24) % 3
  path = helpers.write_npz(tmp_path / 'img.npz', x_train=x, y_train=y, x_test=x[:6], y_test=y[:6])
  assert launch_main(tmp_path / 'w', f'--config.dataset={path}', '--config.model=resnet18',
                     '--config.max_epoch=1', '--config.batch_size=8',
                     '--config.num_chunks=1') == 0
  assert len(_results(tmp_path / 'w')['experiments']) == 1


def test_chunk_buffer_given_is_the_file_order():
  buf, size = setup.chunk_buffer(10, 3, seed=7, order='given')
  assert buf.tolist() == list(range(9)) and size == 3
  random, _ = setup.chunk_buffer(10, 3, seed=7)
  assert sorted(random.tolist()) != random.tolist()


@pytest.mark.slow
def test_chunk_order_given_trains_chunk_k_on_the_kth_slice(tmp_path):
  """Rows in file order: classes 0, 1 first, then 2, 3. With 'given', the
  first experiment sees only classes 0 and 1, so it cannot be right on more
  than half of a balanced test set; the random order sees all four."""
  x, y = helpers.features(80, d=8, k=4, seed=3)
  order = np.argsort(y >= 2, kind='stable')
  xt, yt = helpers.features(40, d=8, k=4, seed=4)
  path = helpers.write_npz(tmp_path / 'stream.npz', x_train=x[order], y_train=y[order], x_test=xt,
                   y_test=yt)
  common = [f'--config.dataset={path}', '--config.label_noise=0', '--config.max_epoch=30',
            '--config.learning_rate=0.1']
  assert launch_main(tmp_path / 'given', *common, '--config.chunk_order=given') == 0
  assert launch_main(tmp_path / 'random', *common) == 0
  given = _results(tmp_path / 'given')['experiments']
  rand = _results(tmp_path / 'random')['experiments']
  assert given[0]['test_acc'] <= 0.5 < rand[0]['test_acc']
  assert given[1]['test_acc'] > 0.5
  assert _results(tmp_path / 'given')['config']['chunk_order'] == 'given'


def test_chunk_order_is_a_science_field_and_old_runs_resume():
  from dash_jax.launch import config as config_lib
  assert 'chunk_order' not in config_lib.EXECUTION_FIELDS
  from configs.digits import get_config
  config = get_config().to_dict()
  added = ('chunk_order', 'train_split', 'test_split', 'image_size', 'num_classes')
  older = {k: v for k, v in config.items() if k not in added}  # saved before they existed
  # an older run's config is upgraded where it is read (config.upgrade)
  assert config_lib.differing_fields(config_lib.upgrade(older), config) == []
  assert config_lib.differing_fields(config_lib.upgrade(older),
                                     {**config, 'chunk_order': 'given'}) == [
      "chunk_order: 'random' -> 'given'"]


# --------------------------------------------------------------- bad input: one line, exit 2


def _refused(capsys, workdir, message, *overrides):
  capsys.readouterr()
  assert launch_main(workdir, *overrides) == 2
  err = capsys.readouterr().err
  lines = [l for l in err.splitlines() if l.strip()]
  assert len(lines) == 1 and lines[0].startswith('error: '), err
  assert message in lines[0], lines[0]
  assert not os.path.exists(workdir)  # nothing written
  return lines[0]


def _npz_refused(capsys, tmp_path, message, **arrays):
  path = helpers.write_npz(tmp_path / 'bad.npz', **arrays)
  return _refused(capsys, tmp_path / 'w', message, f'--config.dataset={path}')


def test_missing_file(capsys, tmp_path):
  _refused(capsys, tmp_path / 'w', f'dataset file {tmp_path}/nope.npz not found',
           f'--config.dataset={tmp_path}/nope.npz')


def test_file_that_is_not_an_npz(capsys, tmp_path):
  (tmp_path / 'x.npz').write_text('a,b\n1,2\n')
  _refused(capsys, tmp_path / 'w', 'is not an .npz file', f'--config.dataset={tmp_path}/x.npz')
  np.save(tmp_path / 'one.npy', np.zeros(3))
  _refused(capsys, tmp_path / 'w', 'holds one array (.npy)',
           f'--config.dataset=npz:{tmp_path}/one.npy')


def test_missing_or_misspelled_array_names(capsys, tmp_path):
  x, y = helpers.features(10)
  line = _npz_refused(capsys, tmp_path, 'lacks x_train (is \'X_train\' it?)', x_train=None,
                      X_train=x)
  assert 'it holds y_train, x_test, y_test, X_train' in line
  _npz_refused(capsys, tmp_path, 'lacks y_test; it holds', y_test=None)


def test_lengths_that_differ(capsys, tmp_path):
  _npz_refused(capsys, tmp_path, 'x_train holds 60 examples but y_train 59 labels',
               y_train=helpers.features(60)[1][:59])


def test_labels_not_integers_negative_or_leaving_classes_empty(capsys, tmp_path):
  y = helpers.features(60)[1]
  _npz_refused(capsys, tmp_path, 'y_train holds float64 values; labels must be integers',
               y_train=y + 0.5)
  _npz_refused(capsys, tmp_path, 'y_test holds negative labels (-1)',
               y_test=np.full(30, -1))
  _npz_refused(capsys, tmp_path, 'classes 1 of 0..2 have no training example',
               y_train=np.where(y == 1, 0, y))
  _npz_refused(capsys, tmp_path, 'y_train has shape (60, 3)', y_train=np.eye(3)[y])


def test_nan_or_inf_in_float_features(capsys, tmp_path):
  x = helpers.features(60)[0]
  x[3, 2], x[7, 0] = np.nan, np.inf
  _npz_refused(capsys, tmp_path, 'x_train holds 2 NaN or inf values (first at index (3, 2))',
               x_train=x)


def test_empty_test_split(capsys, tmp_path):
  _npz_refused(capsys, tmp_path, 'the test split (x_test) is empty',
               x_test=np.zeros((0, 6)), y_test=np.zeros(0, int))


def test_convnet_on_features_names_the_shape(capsys, tmp_path):
  path = helpers.write_npz(tmp_path / 'f.npz')
  _refused(capsys, tmp_path / 'w', "model 'resnet18' is a convnet and needs images (H, W, C) "
           f'per example, but {path} holds inputs of shape (6,)',
           f'--config.dataset={path}', '--config.model=resnet18')


def test_image_folder_with_no_classes(capsys, tmp_path):
  (tmp_path / 'imgs' / 'train').mkdir(parents=True)
  (tmp_path / 'imgs' / 'test').mkdir()
  _refused(capsys, tmp_path / 'w', 'train holds no class folders',
           f'--config.dataset=folder:{tmp_path}/imgs')
  _refused(capsys, tmp_path / 'w', 'not found', f'--config.dataset=folder:{tmp_path}/none')


def test_image_folder_with_a_class_missing_from_test(capsys, tmp_path):
  path = helpers.write_folder(tmp_path / 'imgs')
  for f in (tmp_path / 'imgs' / 'test' / 'dog').iterdir():
    f.unlink()
  _refused(capsys, tmp_path / 'w', 'class dog has no images in test/',
           f'--config.dataset=folder:{path}')


def test_image_folder_with_an_unreadable_image(capsys, tmp_path):
  path = helpers.write_folder(tmp_path / 'imgs')
  (tmp_path / 'imgs' / 'train' / 'dog' / '1.png').write_bytes(b'not a png')
  _refused(capsys, tmp_path / 'w', 'cannot read train/dog/1.png',
           f'--config.dataset=folder:{path}')


@pytest.mark.slow
def test_tfds_name_not_prepared_says_how(capsys, tmp_path):
  line = _refused(capsys, tmp_path / 'w', "tfds dataset 'mnist' is not prepared in",
                  '--config.dataset=tfds:mnist', f'--config.data_dir={tmp_path}/tfds')
  assert f'tfds build mnist --data_dir {tmp_path}/tfds' in line
  assert '--config.download=True' in line
  _refused(capsys, tmp_path / 'w', "tfds knows no dataset 'no_such_set'",
           '--config.dataset=tfds:no_such_set', f'--config.data_dir={tmp_path}/tfds')


@pytest.mark.slow
def test_tfds_builder_without_supervised_keys_names_its_features(capsys, tmp_path):
  tfds = pytest.importorskip('tensorflow_datasets')

  class DashNoKeys(tfds.core.GeneratorBasedBuilder):
    __module__ = 'dash_jax.data'  # tfds looks for a builder's files in its package
    VERSION = tfds.core.Version('1.0.0')

    def _info(self):
      return self.dataset_info_from_configs(features=tfds.features.FeaturesDict({
          'pixels': tfds.features.Tensor(shape=(2,), dtype=np.float32),
          'kind': tfds.features.ClassLabel(num_classes=2)}))

    def _split_generators(self, dl_manager):
      return {'train': self._generate_examples(), 'test': self._generate_examples()}

    def _generate_examples(self):
      for i in range(4):
        yield i, {'pixels': np.zeros(2, np.float32), 'kind': i % 2}

  DashNoKeys(data_dir=str(tmp_path / 'tfds')).download_and_prepare()
  _refused(capsys, tmp_path / 'w', 'has no (input, label) supervised keys; its features are '
           'pixels, kind', '--config.dataset=tfds:dash_no_keys',
           f'--config.data_dir={tmp_path}/tfds')


def test_unknown_dataset_and_misplaced_fields(capsys, tmp_path):
  _refused(capsys, tmp_path / 'w', "unknown dataset 'digitz'; valid: cifar10",
           '--config.dataset=digitz')
  _refused(capsys, tmp_path / 'w', 'config.image_size=8 applies to folder datasets only',
           '--config.image_size=8')
  _refused(capsys, tmp_path / 'w', "unknown chunk_order 'time'", '--config.chunk_order=time')


# --------------------------------------------------------------- the README's example


def readme_example():
  """The code blocks of README.md's 'Your data' example, in order: the
  python block after the marker, then the bash block."""
  with open(os.path.join(helpers.ROOT, 'README.md')) as f:
    text = f.read()
  section = text.split('<!-- your-data-example -->', 1)[1].split('\n## ', 1)[0]
  blocks = re.findall(r'```(\w+)\n(.*?)```', section, re.S)
  assert [lang for lang, _ in blocks] == ['python', 'bash'], blocks
  return blocks[0][1], blocks[1][1]


@pytest.mark.slow
def test_readme_your_data_example_runs_as_written(tmp_path, monkeypatch, capsys):
  """The python block as written, then each bash line: launch.py through its
  main (with a tiny config appended: fewer seeds, chunks, epochs), cat by
  reading the file."""
  python, bash = readme_example()
  monkeypatch.chdir(tmp_path)  # the example writes data/ and runs/ where it runs
  exec(compile(python, 'README.md', 'exec'), {'__name__': '__readme__'})
  with np.load('data/breast_cancer.npz') as f:
    assert f['x_train'].shape == (398, 30) and f['x_test'].shape == (171, 30)
  commands = [shlex.split(line) for line in bash.replace('\\\n', ' ').splitlines() if line.strip()]
  assert [c[:2] for c in commands] == [['python', 'launch.py'], ['cat', 'runs/breast_cancer/report.md']]
  argv = [os.path.join(helpers.ROOT, a) if a.startswith('configs/') else a for a in commands[0][2:]]
  tiny = ['--config.seeds=0', '--config.num_chunks=2', '--config.max_epoch=3',
          '--config.width=16', '--config.compile_cache_dir=', '--config.progress=False',
          '--config.tensorboard=False']
  assert launch_argv(argv + tiny) == 0
  with open(commands[1][1]) as f:
    report = f.read()
  assert '## data/breast_cancer.npz' in report
  for tt in ('Cold', 'Warm', 'S&P', 'DASH'):
    assert f'| SGD | {tt} | 1 |' in report
