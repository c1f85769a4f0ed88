"""The paper's datasets through tfds: every loader under mock data, the
Tiny-ImageNet builder on a tiny folder in the official layout, and the one
message a missing dataset gives. Nothing is downloaded."""
import dataclasses
import os
import sys
import zipfile

import numpy as np
import pytest
from PIL import Image

from configs.digits import get_config
from dash_jax import data
from dash_jax.data import images, tiny_imagenet
from dash_jax.errors import UserError

EXPECTED = {  # name: (image shape, classes)
    'cifar10': ((32, 32, 3), 10),
    'cifar100': ((32, 32, 3), 100),
    'svhn': ((32, 32, 3), 10),
    'svhn_cropped': ((32, 32, 3), 10),
    'fashion_mnist': ((28, 28, 1), 10),
    'tiny_imagenet': ((64, 64, 3), 200),
}


def _config(dataset, data_dir, **overrides):
  config = get_config()
  config.dataset, config.data_dir = dataset, str(data_dir)
  for k, v in overrides.items():
    config[k] = v
  return config


def test_every_loader_under_mock_data(mock_tfds, tmp_path):
  with mock_tfds(num_examples=40):
    loaded = {name: data.load(_config(name, tmp_path)) for name in EXPECTED}
    subset = dataclasses.replace(images.IMAGE_SETS['svhn'], train_size=25)(
        _config('svhn', tmp_path))
  for name, (shape, classes) in EXPECTED.items():
    ds = loaded[name]
    assert ds.train_x.shape == (40,) + shape and ds.train_x.dtype == np.uint8
    assert ds.test_x.shape == (40,) + shape and ds.test_y.dtype == np.int32
    assert ds.num_classes == classes and ds.input_shape == shape
    assert ds.train_y.min() >= 0 and ds.train_y.max() < classes
    assert ds.mean.shape == ds.std.shape == (shape[-1],)
  assert loaded['svhn_cropped'].name == 'svhn'
  np.testing.assert_allclose(loaded['cifar10'].mean / 255, [0.4914, 0.4822, 0.4465])
  np.testing.assert_allclose(loaded['cifar10'].std / 255, [0.2023, 0.1994, 0.2010])
  np.testing.assert_allclose(loaded['tiny_imagenet'].mean / 255, [0.485, 0.456, 0.406])
  for name in ('cifar100', 'fashion_mnist', 'svhn'):  # from the training split
    x = loaded[name].train_x.reshape(-1, loaded[name].train_x.shape[-1])
    np.testing.assert_allclose(loaded[name].mean, x.mean(0), rtol=1e-5)
    np.testing.assert_allclose(loaded[name].std, x.std(0), rtol=1e-5)
  # SVHN keeps a fixed random subset of the training split; stats of all of it.
  full = loaded['svhn']
  assert subset.train_x.shape[0] == 25
  rows = [np.flatnonzero((full.train_x == x).all(axis=(1, 2, 3)))[0] for x in subset.train_x]
  assert len(set(rows)) == 25 and rows != list(range(25))
  np.testing.assert_array_equal(subset.train_y, full.train_y[rows])
  np.testing.assert_allclose(subset.mean, full.mean)


def test_missing_dataset_is_one_clear_error(tmp_path):
  with pytest.raises(UserError) as e:
    data.load(_config('cifar100', tmp_path))
  msg = str(e.value)
  assert "'cifar100'" in msg and str(tmp_path) in msg and '\n' not in msg
  assert f'tfds build cifar100 --data_dir {tmp_path}' in msg
  assert '--config.download=True' in msg
  manual = tmp_path / 'manual'
  with pytest.raises(UserError) as e:
    data.load(_config('tiny_imagenet', tmp_path, manual_dir=str(manual)))
  msg = str(e.value)
  assert "'tiny_imagenet'" in msg and str(manual) in msg
  assert tiny_imagenet.URL in msg and '--config.manual_dir' in msg
  assert not (tmp_path / 'downloads').exists()  # nothing fetched


def test_missing_dataset_warns_about_no_missing_folder(tmp_path, caplog):
  """tfds warns 'Variant folder X has no dataset_info.json' for an X that
  does not exist; the one error line above is all a user sees."""
  tfds = pytest.importorskip('tensorflow_datasets')
  caplog.set_level('WARNING')
  tfds.builder('cifar10', data_dir=str(tmp_path)).is_prepared()  # unfiltered tfds
  assert 'Variant folder' in caplog.text  # the warning the filter must drop
  caplog.clear()
  with pytest.raises(UserError):
    data.load(_config('cifar10', tmp_path))
  assert 'Variant folder' not in caplog.text


@pytest.mark.parametrize('dataset', ['cifar10', 'digits', 'tiny_imagenet', 'tfds:mnist'])
def test_missing_tfds_names_the_extra(dataset, tmp_path, monkeypatch):
  """Without tensorflow-datasets (the wheel alone), a dataset read through
  it is one line that names what to install."""
  monkeypatch.setitem(sys.modules, 'tensorflow_datasets', None)  # import fails
  with pytest.raises(UserError) as e:
    data.load(_config(dataset, tmp_path))
  msg = str(e.value)
  assert "pip install 'dash-jax[data]'" in msg and 'requirements.txt' in msg
  assert dataset in msg and '\n' not in msg


WNIDS = ['n02', 'n01', 'n03']  # unsorted on purpose: labels follow sorted ids


def _write_tiny_imagenet(root):
  """The official layout, 2 training images per class, 4 validation images.
  Each image is one flat grey level that encodes its class (JPEG-safe)."""
  level = lambda wnid: 40 + 60 * sorted(WNIDS).index(wnid)
  base = root / 'tiny-imagenet-200'
  (base / 'val' / 'images').mkdir(parents=True)
  (base / 'wnids.txt').write_text('\n'.join(WNIDS) + '\n')
  (base / 'words.txt').write_text(''.join(f'{w}\tthing {w}\n' for w in WNIDS))
  for wnid in WNIDS:
    folder = base / 'train' / wnid / 'images'
    folder.mkdir(parents=True)
    for i in range(2):
      mode = 'L' if i == 1 else 'RGB'  # the official set has greyscale JPEGs
      Image.new(mode, (64, 64), (level(wnid),) * len(mode)).save(
          folder / f'{wnid}_{i}.JPEG')
    (base / 'train' / wnid / f'{wnid}_boxes.txt').write_text('')
  val = ['n03', 'n01', 'n01', 'n02']
  lines = []
  for i, wnid in enumerate(val):
    Image.new('RGB', (64, 64), (level(wnid),) * 3).save(
        base / 'val' / 'images' / f'val_{i}.JPEG')
    lines.append(f'val_{i}.JPEG\t{wnid}\t0\t0\t63\t63\n')
  (base / 'val' / 'val_annotations.txt').write_text(''.join(lines))
  return base, [sorted(WNIDS).index(w) for w in val]


def _check(ds, val_labels):
  assert ds.num_classes == 200 and ds.name == 'tiny_imagenet'
  assert ds.train_x.shape == (6, 64, 64, 3) and ds.test_x.shape == (4, 64, 64, 3)
  assert sorted(ds.train_y.tolist()) == [0, 0, 1, 1, 2, 2]
  assert sorted(ds.test_y.tolist()) == sorted(val_labels)
  for x, y in zip(np.concatenate([ds.train_x, ds.test_x]),
                  np.concatenate([ds.train_y, ds.test_y])):
    assert abs(float(x.mean()) - (40 + 60 * y)) < 3  # image and label agree
    assert np.array_equal(x[..., 0], x[..., 2])  # greyscale became RGB


def test_tiny_imagenet_builds_from_folder_and_from_zip(tmp_path):
  base, val_labels = _write_tiny_imagenet(tmp_path / 'unpacked')
  ds = data.load(_config('tiny_imagenet', tmp_path / 'tfds_a',
                         manual_dir=str(tmp_path / 'unpacked')))
  _check(ds, val_labels)
  zipped = tmp_path / 'zipped'
  zipped.mkdir()
  with zipfile.ZipFile(zipped / tiny_imagenet.ARCHIVE, 'w') as z:
    for path in sorted(base.rglob('*')):
      z.write(path, path.relative_to(base.parent))
  ds_zip = data.load(_config('tiny_imagenet', tmp_path / 'tfds_b',
                             manual_dir=str(zipped)))
  _check(ds_zip, val_labels)
  order = lambda d: np.lexsort((d.train_x.reshape(6, -1).sum(1), d.train_y))
  np.testing.assert_array_equal(ds.train_x[order(ds)], ds_zip.train_x[order(ds_zip)])
  # Prepared once: the next load reads the tfds files, not the manual dir.
  os.rename(zipped / tiny_imagenet.ARCHIVE, zipped / 'moved.zip')
  again = data.load(_config('tiny_imagenet', tmp_path / 'tfds_b', manual_dir=str(zipped)))
  np.testing.assert_array_equal(np.sort(again.test_y), np.sort(ds_zip.test_y))


def test_prepared_splits_are_kept_as_arrays(tmp_path):
  """The first load reads tfds records (TensorFlow) and keeps the arrays
  beside them; later loads read those, a damaged file is read again."""
  config = _config('digits', tmp_path)
  first = data.load(config)
  folder = tmp_path / 'dash_digits' / '1.0.0'
  kept = sorted(p.name for p in folder.glob('dash_jax-*.npz'))
  assert kept == ['dash_jax-test.npz', 'dash_jax-train.npz']
  with np.load(folder / 'dash_jax-train.npz') as f:
    np.testing.assert_array_equal(f['x'], first.train_x)
    np.testing.assert_array_equal(f['y'], first.train_y)
  (folder / 'dash_jax-test.npz').write_bytes(b'not an npz')
  again = data.load(config)
  np.testing.assert_array_equal(again.test_x, first.test_x)
  np.testing.assert_array_equal(again.train_y, first.train_y)
  with np.load(folder / 'dash_jax-test.npz') as f:  # rewritten
    np.testing.assert_array_equal(f['y'], first.test_y)


def test_mock_data_is_never_kept(mock_tfds, tmp_path):
  with mock_tfds(num_examples=12):
    data.load(_config('cifar10', tmp_path))
  assert not list(tmp_path.rglob('*.npz'))


def test_digits_name_and_version_match_the_builder():
  """load_digits finds kept arrays without importing tfds by these two."""
  from dash_jax.data.digits import DashDigits
  assert DashDigits.name == data.DIGITS_NAME
  assert str(DashDigits.VERSION) == data.DIGITS_VERSION


def test_digits_read_kept_arrays_without_building(tmp_path, monkeypatch):
  first = data.load(_config('digits', tmp_path))
  from dash_jax.data import digits

  def refuse(*args, **kwargs):
    raise AssertionError('tfds builder used although arrays are kept')
  monkeypatch.setattr(digits, 'DashDigits', refuse)
  again = data.load(_config('digits', tmp_path))
  np.testing.assert_array_equal(again.train_x, first.train_x)
  np.testing.assert_array_equal(again.test_y, first.test_y)
  np.testing.assert_array_equal(again.mean, first.mean)


@pytest.mark.slow
def test_random_cifar_shape_is_seeded_noise_never_a_default(tmp_path):
  from dash_jax.data import random_images
  ds = data.load(_config('random_cifar_shape', tmp_path))
  assert ds.train_x.shape == (50_000, 32, 32, 3) and ds.train_x.dtype == np.uint8
  assert ds.test_x.shape == (10_000, 32, 32, 3) and ds.test_y.dtype == np.int32
  assert ds.num_classes == 10 and ds.input_shape == (32, 32, 3)
  assert sorted(set(ds.train_y.tolist())) == list(range(10))
  pixels = ds.train_x[:2000].reshape(-1, 3).astype(np.float64)
  np.testing.assert_allclose(ds.mean, pixels.mean(0), atol=0.5)
  np.testing.assert_allclose(ds.std, pixels.std(0), atol=0.5)
  np.testing.assert_allclose(ds.std, np.sqrt((256 ** 2 - 1) / 12), rtol=1e-6)
  random_images.random_arrays.cache_clear()  # built again from the seed: same
  again = data.load(_config('random_cifar_shape', tmp_path))
  assert again.train_x is not ds.train_x
  np.testing.assert_array_equal(again.train_x, ds.train_x)
  np.testing.assert_array_equal(again.test_y, ds.test_y)
  subset = data.load(_config('random_cifar_shape', tmp_path, num_train=100))
  assert subset.train_x.shape == (100, 32, 32, 3)
  assert not list(tmp_path.iterdir())  # nothing written
  assert get_config().dataset != 'random_cifar_shape'
  configs = os.path.join(os.path.dirname(os.path.dirname(__file__)), 'configs')
  for name in (n for n in os.listdir(configs) if n.endswith('.py')):
    with open(os.path.join(configs, name)) as f:
      assert 'random_cifar_shape' not in f.read(), name
