"""A user's own data in the protocol: an .npz file, any tfds image
classification dataset, or a folder of images.

`config.dataset` names one of them besides the registered datasets:

  PATH.npz or npz:PATH      arrays x_train, y_train, x_test, y_test (np.savez)
  tfds:NAME[/CONFIG]        a prepared tfds dataset (config.train_split, test_split)
  folder:PATH               PATH/train/CLASS/*.png|jpg and PATH/test/CLASS/*

Each becomes the same Dataset record as a registered one: uint8 images
(N, H, W, C), or float32 features (N, ...). Every input a user can get wrong
is one UserError naming it, raised before any compute.

Readers are libraries': NumPy's npz, tfds builders and split strings, and
Pillow for image folders. (tfds's own ImageFolder builder, as of tfds 4.9,
shuffles the files of a split, so `chunk_order='given'` could not replay
them in order; it cannot resize; and it decodes lazily inside TensorFlow, so
an unreadable image fails without its name. Pillow reads the same layout in
sorted order, names a bad file and resizes, and needs no TensorFlow.)
"""
from __future__ import annotations

import difflib
import functools
import hashlib
import os
import socket
import textwrap
import threading
import warnings
import zipfile
import zlib

import numpy as np

from dash_jax.data import base
from dash_jax.errors import UserError

NPZ_ARRAYS = ('x_train', 'y_train', 'x_test', 'y_test')
IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg')
FORMS = 'PATH.npz (or npz:PATH), tfds:NAME[/CONFIG], folder:PATH'
KINDS = ('npz', 'tfds', 'folder')
# Fields only one kind of dataset reads (their defaults: configs/default.py).
KIND_FIELDS = {'train_split': 'tfds', 'test_split': 'tfds', 'image_size': 'folder',
               'num_classes': 'npz'}


def parse(name: str, registered) -> tuple[str, str]:
  """(kind, target): ('registered', name), ('npz', path), ('tfds', name) or
  ('folder', path); UserError for a string that is none of them."""
  name = str(name)
  for kind in KINDS:
    if name.startswith(kind + ':'):
      target = name[len(kind) + 1:].strip()
      if not target:
        raise UserError(f'config.dataset={name!r} names no {kind}; e.g. '
                        f'--config.dataset={kind}:{"mnist" if kind == "tfds" else "data/x"}'
                        f'{".npz" if kind == "npz" else ""}')
      return kind, target
  if name in registered:
    return 'registered', name
  if name.lower().endswith('.npz') or os.sep in name or '/' in name or os.path.isfile(name):
    return 'npz', name
  raise UserError(f'unknown dataset {name!r}; valid: {", ".join(sorted(registered))}, '
                  f'or your own data: {FORMS}')


# ------------------------------------------------------------- fingerprints


def fingerprint(kind: str, target: str) -> dict | None:
  """{'path', 'size', 'sha256'} of a file dataset (a folder: of its image
  files, by relative path and contents), computed once a process per file
  version; None for tfds names."""
  if kind == 'npz':
    path = _existing_file(target)
    try:
      st = os.stat(path)
      return _file_digest(path, st.st_size, st.st_mtime_ns)
    except OSError as e:
      raise _unreadable_file(target, e) from None
  if kind == 'folder':
    root = _existing_folder(target)
    files = _image_files(root, target)
    stamp = []
    for f in files:
      try:
        stamp.append((f, os.stat(os.path.join(root, f)).st_mtime_ns))
      except OSError as e:
        raise _unreadable(target, f, e.strerror) from None
    try:
      return _folder_digest(root, tuple(stamp))
    except OSError as e:
      raise _unreadable(target, os.path.relpath(e.filename or root, root), e.strerror) from None
  return None


def _unreadable_file(target, e: OSError) -> UserError:
  return UserError(f'dataset file {target}: cannot read it ({e.strerror}); fix or '
                   f'replace the file')


def _unreadable(target, rel, why) -> UserError:
  return UserError(f'image folder {target}: cannot read {rel} ({why}); replace or remove it')


@functools.lru_cache(maxsize=16)
def _file_digest(path, size, mtime_ns) -> dict:
  del mtime_ns  # part of the cache key: a rewritten file is hashed again
  digest = hashlib.sha256()
  with open(path, 'rb') as f:
    for block in iter(lambda: f.read(1 << 20), b''):
      digest.update(block)
  return {'path': path, 'size': size, 'sha256': digest.hexdigest()}


@functools.lru_cache(maxsize=16)
def _folder_digest(root, stamp) -> dict:
  digest, size = hashlib.sha256(), 0
  for rel, _ in stamp:
    with open(os.path.join(root, rel), 'rb') as f:
      content = f.read()
    size += len(content)
    digest.update(f'{rel}\0{len(content)}\0'.encode())
    digest.update(content)
  return {'path': root, 'size': size, 'files': len(stamp), 'sha256': digest.hexdigest()}


def _existing_file(target) -> str:
  path = os.path.abspath(os.path.expanduser(target))
  if os.path.isdir(path):
    raise UserError(f'dataset file {target} is a folder; give an .npz file, or '
                    f'folder:{target} for a folder of images')
  if os.path.islink(path) and not os.path.exists(path):
    raise UserError(f'dataset file {target} is a symbolic link that leads nowhere (a loop, '
                    f'or its target is gone); point it at the .npz file')
  if not os.path.isfile(path):
    raise UserError(f'dataset file {target} not found (looked for {path}); check the '
                    f'path, relative to where launch.py runs')
  return path


def _existing_folder(target) -> str:
  path = os.path.abspath(os.path.expanduser(target))
  if not os.path.isdir(path):
    raise UserError(f'image folder {target} not found (looked for {path}); give a '
                    f'folder holding train/CLASS/*.png and test/CLASS/*.png')
  return path


# ------------------------------------------------------------- checks shared by every kind


def _labels(y, what, limit) -> np.ndarray:
  """Integer labels 0..K-1 as int32. Every class needs a training example,
  so K is at most `limit`, the number of training examples: a larger label
  is refused before anything scales with it (and before int32 could wrap it)."""
  if y.ndim != 1:
    hint = ' (one-hot? save y.argmax(1))' if y.ndim == 2 else ''
    raise UserError(f'{what} has shape {y.shape}; labels must be one integer per '
                    f'example, shape (N,){hint}')
  if not np.issubdtype(y.dtype, np.integer):
    raise UserError(f'{what} holds {y.dtype} values; labels must be integers 0..K-1 '
                    f'(save y.astype(np.int64), mapping class names to 0..K-1)')
  if len(y) and y.min() < 0:
    raise UserError(f'{what} holds negative labels ({int(y.min())}); labels must be '
                    f'integers 0..K-1')
  if limit and len(y) and int(y.max()) >= limit:
    raise UserError(f'{what} holds label {int(y.max())}, but there are only {limit} '
                    f'training examples and every class needs one; labels must be '
                    f'integers 0..K-1 with K at most {limit}')
  return y.astype(np.int32)


def _num_classes(train_y, test_y, given, where, tfds_classes=False) -> int:
  """K: `given` (config.num_classes, or a tfds dataset's own count) or the
  largest label + 1; every class must have training examples."""
  top = int(max(train_y.max(), test_y.max())) + 1
  if given and top > given:
    raise UserError(f'{where} holds label {top - 1}, but config.num_classes={given}; '
                    f'labels must be 0..{given - 1} (or raise num_classes)')
  if given > len(train_y):  # checked before counting: a huge K would fill the memory
    if tfds_classes:
      raise UserError(f'{where} has {given} classes but config.train_split keeps only '
                      f'{len(train_y)} training examples; every class needs one: take '
                      f'a larger train_split')
    raise UserError(f'config.num_classes={given} exceeds the {len(train_y)} training '
                    f'examples of {where}; every class needs one: lower num_classes')
  k = given or top
  empty = np.flatnonzero(np.bincount(train_y, minlength=k) == 0).tolist()
  if empty:
    shown = ', '.join(map(str, empty[:10])) + (', ...' if len(empty) > 10 else '')
    raise UserError(f'{where}: classes {shown} of 0..{k - 1} have no training example; '
                    f'number the classes present 0..K-1 without gaps')
  return k


def _inputs(x, what):
  """uint8 images (N, H, W[, C]) as (N, H, W, C); other numbers as float32."""
  if 0 in x.shape[1:]:
    raise UserError(f'{what} has shape {x.shape}: examples of no values; each example '
                    f'needs at least one feature (or pixel)')
  if x.dtype == np.uint8 and x.ndim in (3, 4):
    return x if x.ndim == 4 else x[..., None]
  if not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_) or np.iscomplexobj(x):
    raise UserError(f'{what} holds {x.dtype} values; inputs must be uint8 images '
                    f'(N, H, W[, C]) or real numbers (N, ...)')
  if x.ndim < 2:
    raise UserError(f'{what} has shape {x.shape}; inputs need a leading example axis '
                    f'and at least one feature: (N, D) or (N, ...)')
  if np.issubdtype(x.dtype, np.inexact):
    _finite(x, what)
  with np.errstate(over='ignore'):
    x32 = x.astype(np.float32)
  big = ~np.isfinite(x32)
  if big.any():  # finite in a wider type, beyond float32's +-3.4e38
    first = tuple(int(i) for i in np.argwhere(big)[0])
    raise UserError(f'{what} holds {int(big.sum())} values out of float32 range (first '
                    f'{float(x[first]):g} at index {first}); features are trained as float32: '
                    f'rescale them below 3.4e38 in magnitude')
  return x32


def _finite(x, what) -> None:
  bad = ~np.isfinite(x)
  if bad.any():
    first = np.argwhere(bad)[0]
    raise UserError(f'{what} holds {int(bad.sum())} NaN or inf values (first at index '
                    f'{tuple(int(i) for i in first)}); fill or drop them before saving')


def _dataset(name, train_x, train_y, test_x, test_y, num_classes, source) -> base.Dataset:
  """The record, with normalisation constants: images per channel, float
  features per feature, both from the training split. normalize='auto' is
  'standard' for both: a user's images are standardised for every model, as
  the built-in digits are (its one channel's statistics)."""
  if train_x.dtype == np.uint8:
    mean, std = base.pixel_stats(train_x)
    std = np.where(std > 0, std, 1.0).astype(np.float32)
  else:
    mean, std = base.feature_stats(train_x)
  return base.Dataset(name, train_x, train_y, test_x, test_y, num_classes, mean=mean,
                      std=std, auto_normalize='standard', source=source)


def _check_splits(name, train_x, train_y, test_x, test_y, names):
  """Lengths, shapes and kinds that must agree; no empty split."""
  for x, y, xn, yn in ((train_x, train_y, *names[:2]), (test_x, test_y, *names[2:])):
    if len(x) != len(y):
      raise UserError(f'{name}: {xn} holds {len(x)} examples but {yn} {len(y)} labels; '
                      f'give one label per example')
  if not len(train_y):
    raise UserError(f'{name}: the training split ({names[0]}) is empty')
  if not len(test_y):
    raise UserError(f'{name}: the test split ({names[2]}) is empty; the protocol '
                    f'evaluates on it after every experiment')
  if train_x.shape[1:] != test_x.shape[1:] or train_x.dtype != test_x.dtype:
    raise UserError(f'{name}: {names[0]} is {train_x.dtype} {train_x.shape[1:]} per example '
                    f'but {names[2]} {test_x.dtype} {test_x.shape[1:]}; both splits need '
                    f'one shape and kind')


# ------------------------------------------------------------- npz


_SAVE_NPZ = 'np.savez(path, x_train=..., y_train=..., x_test=..., y_test=...)'
# What reading a damaged or foreign file raises (a truncated zip, a bad CRC, ...).
_READ_ERRORS = (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error)


def _open_npz(path, target):
  """The NpzFile at path; UserError for anything else (text, .npy, damaged)."""
  try:
    with open(path, 'rb') as raw:
      head = raw.read(6)
  except OSError as e:
    raise _unreadable_file(target, e) from None
  if head.startswith(b'\x93NUMPY'):
    raise UserError(f'dataset file {target} holds one array (.npy), not an .npz; save '
                    f'{_SAVE_NPZ}')
  if not head.startswith(b'PK'):
    raise UserError(f'dataset file {target} is not an .npz file (it does not start as a '
                    f'zip archive does: text, CSV or another format?); save one with '
                    f'{_SAVE_NPZ}')
  try:
    return np.load(path, allow_pickle=False)
  except _READ_ERRORS as e:
    raise UserError(f'dataset file {target} is not a readable .npz file ({_reason(e)}); '
                    f'a damaged or cut-short copy? save it again with {_SAVE_NPZ}') from None


def _read_arrays(f, target) -> dict:
  held = list(f.files)
  missing = [a for a in NPZ_ARRAYS if a not in held]
  if missing:
    hints = [f'{a} (is {close[0]!r} it?)' if (close := difflib.get_close_matches(
        a, [h for h in held if h not in NPZ_ARRAYS], n=1, cutoff=0.5)) else a
        for a in missing]
    raise UserError(f'dataset file {target} lacks {", ".join(hints)}; it holds '
                    f'{", ".join(held) or "no arrays"}; save it with the names '
                    f'{", ".join(NPZ_ARRAYS)}')
  arrays = {}
  for a in NPZ_ARRAYS:
    try:
      arrays[a] = f[a]
    except ValueError as e:
      if 'allow_pickle' not in str(e):
        raise UserError(f'dataset file {target}: cannot read {a} ({_reason(e)}); save '
                        f'the file again with {_SAVE_NPZ}') from None
      raise UserError(f'dataset file {target}: {a} holds Python objects; save numeric '
                      f'arrays (np.asarray(..., dtype=...))') from None
    except _READ_ERRORS as e:
      raise UserError(f'dataset file {target}: cannot read {a} ({_reason(e)}): the file '
                      f'is damaged; save it again with {_SAVE_NPZ}') from None
  return arrays


def load_npz(settings, target) -> base.Dataset:
  source = dict(kind='npz', **fingerprint('npz', target))
  name = settings.dataset
  with _open_npz(source['path'], target) as f:
    arrays = _read_arrays(f, target)
  where = f'dataset file {target}'
  train_x = _inputs(arrays['x_train'], f'{where}: x_train')
  test_x = _inputs(arrays['x_test'], f'{where}: x_test')
  limit = len(arrays['y_train'])
  train_y = _labels(arrays['y_train'], f'{where}: y_train', limit)
  test_y = _labels(arrays['y_test'], f'{where}: y_test', limit)
  _check_splits(where, train_x, train_y, test_x, test_y, NPZ_ARRAYS)
  k = _num_classes(train_y, test_y, settings.num_classes, where)
  source['arrays'] = {a: [list(v.shape), str(v.dtype)] for a, v in arrays.items()}
  return _dataset(name, train_x, train_y, test_x, test_y, k, source)


def _reason(e) -> str:
  """The exception's text on one line, shortened at a word (never mid-word)."""
  text = ' '.join(str(e).split())
  return textwrap.shorten(text, 120, placeholder=' ...') if text else type(e).__name__


# ------------------------------------------------------------- tfds


# Reached before a tfds download (tfds's own mirror); offline, tfds would
# retry name resolution silently for minutes, so a launch fails in seconds.
ONLINE_PROBE = ('storage.googleapis.com', 443)
ONLINE_TIMEOUT_S = 5.0


def check_online(target) -> None:
  """UserError unless ONLINE_PROBE accepts a connection within
  ONLINE_TIMEOUT_S (name resolution included: it runs in a thread); behind
  an https proxy (HTTPS_PROXY), the proxy is what must answer."""
  import urllib.parse
  import urllib.request
  host, port = ONLINE_PROBE
  proxy = urllib.request.getproxies().get('https')
  if proxy:
    parts = urllib.parse.urlsplit(proxy if '//' in proxy else '//' + proxy)
    host, port = parts.hostname or host, parts.port or 80
  outcome = []

  def probe():
    try:
      socket.create_connection((host, port), timeout=ONLINE_TIMEOUT_S).close()
      outcome.append(None)
    except OSError as e:
      outcome.append(e.strerror or str(e) or type(e).__name__)
  thread = threading.Thread(target=probe, daemon=True)
  thread.start()
  thread.join(ONLINE_TIMEOUT_S + 1.0)
  why = outcome[0] if outcome else f'no answer in {ONLINE_TIMEOUT_S:g} s'
  if why is not None:
    raise UserError(f'--config.download=True cannot download tfds:{target}: this machine '
                    f'cannot reach {host}:{port} ({why}); prepare it where there is a '
                    f'network (`tfds build {target} --data_dir DIR`) and point '
                    f'--config.data_dir at DIR')


def load_tfds(settings, target) -> base.Dataset:
  tfds = base.import_tfds(f'config.dataset=tfds:{target}')
  root = base.data_dir(settings)
  try:
    with base.quiet_missing_folders():
      builder = tfds.builder(target, data_dir=root)
      prepared = builder.is_prepared()
  except tfds.core.registered.DatasetNotFoundError:
    raise UserError(f'tfds knows no dataset {target!r} (installed tfds '
                    f'{tfds.__version__}); see tfds.list_builders() for the names') from None
  except (ValueError, KeyError) as e:
    raise UserError(f'tfds:{target}: {_reason(e)}') from None
  if not prepared:
    if not settings.download:
      raise UserError(
          f'tfds dataset {target!r} is not prepared in {builder.data_path}; prepare it '
          f'once with `tfds build {target} --data_dir {root}`, or rerun with '
          f'--config.download=True, or point --config.data_dir at a tfds data dir '
          f'that holds it')
    check_online(target)
    builder.download_and_prepare()
  keys = builder.info.supervised_keys
  features = builder.info.features
  if not keys or len(keys) != 2 or not all(isinstance(k, str) for k in keys):
    raise UserError(f'tfds dataset {target!r} has no (input, label) supervised keys; '
                    f'its features are {", ".join(features.keys())}; only image '
                    f'classification datasets with supervised keys can be read')
  splits, split_names = [], {}
  for field in ('train_split', 'test_split'):
    split = split_names[field] = getattr(settings, field)
    try:
      splits.append(base.tfds_split_arrays(builder, split))
    except (ValueError, KeyError, AssertionError) as e:
      raise UserError(f'tfds:{target}: config.{field}={split!r} is not a split of it '
                      f'(splits: {", ".join(builder.info.splits.keys())}; tfds split '
                      f'strings such as train[:90%] work): {_reason(e)}') from None
  (train_x, train_y), (test_x, test_y) = splits
  where = f'tfds:{target}'
  train_x, test_x = _inputs(train_x, f'{where} {keys[0]}'), _inputs(test_x, f'{where} {keys[0]}')
  train_y = _labels(train_y, f'{where} {keys[1]}', len(train_y))
  test_y = _labels(test_y, f'{where} {keys[1]}', len(train_y))
  tr, te = split_names['train_split'], split_names['test_split']
  _check_splits(where, train_x, train_y, test_x, test_y,
                (tr, f'{tr} labels', te, f'{te} labels'))
  label = features[keys[1]]
  given = getattr(label, 'num_classes', None) or 0
  k = _num_classes(train_y, test_y, given, where, tfds_classes=True)
  source = {'kind': 'tfds', 'name': target, 'version': str(builder.info.version),
            'data_dir': root, 'train_split': tr, 'test_split': te,
            'supervised_keys': list(keys)}
  return _dataset(settings.dataset, train_x, train_y, test_x, test_y, k, source)


# ------------------------------------------------------------- image folders


def _image_files(root, target) -> list[str]:
  """Image files under root/train and root/test, relative, sorted; a name
  that is not UTF-8 (it could not be written into results) is refused."""
  out = []
  for split in ('train', 'test'):
    folder = os.path.join(root, split)
    if not os.path.isdir(folder):
      continue
    for cls in sorted(os.listdir(folder)):
      if os.path.isdir(os.path.join(folder, cls)):
        out += [f'{split}/{cls}/{f}' for f in sorted(os.listdir(os.path.join(folder, cls)))
                if f.lower().endswith(IMAGE_SUFFIXES)]
  for rel in out:
    try:
      rel.encode()
    except UnicodeEncodeError:
      shown = rel.encode(errors='surrogateescape').decode(errors='backslashreplace')
      raise UserError(f'image folder {target}: the name {shown} is not UTF-8 (shown '
                      f'escaped); rename the file or class folder in UTF-8') from None
  return out


def _classes(root, split, target) -> dict[str, list[str]]:
  folder = os.path.join(root, split)
  if not os.path.isdir(folder):
    raise UserError(f'image folder {target} has no {split}/ folder; lay it out as '
                    f'{target}/train/CLASS/*.png and {target}/test/CLASS/*.png')
  classes = {c: sorted(f for f in os.listdir(os.path.join(folder, c))
                       if f.lower().endswith(IMAGE_SUFFIXES))
             for c in sorted(os.listdir(folder)) if os.path.isdir(os.path.join(folder, c))}
  if not classes:
    raise UserError(f'image folder {target}/{split} holds no class folders; put each '
                    f'class\'s images in {target}/{split}/CLASS/')
  return classes


# 16-bit greyscale (Pillow modes I;16*, and I as older Pillows open such
# PNGs): 0..65535 scaled to 0..255 as round(v / 257), so 65535 -> 255 and the
# full range is kept, never clipped; an I image with values outside 0..65535
# (not a 16-bit file) and float images (mode F) are refused.
SIXTEEN_BIT_MODES = ('I;16', 'I;16L', 'I;16B', 'I;16N', 'I')


def _read_image(root, rel, target):
  """The image at root/rel as Pillow mode L (greyscale) or RGB. Images past
  Pillow's decompression-bomb limit (Image.MAX_IMAGE_PIXELS) are refused."""
  from PIL import Image, UnidentifiedImageError
  try:
    with warnings.catch_warnings():
      warnings.simplefilter('error', Image.DecompressionBombWarning)
      with Image.open(os.path.join(root, rel)) as im:
        im.load()
        if im.mode in SIXTEEN_BIT_MODES:
          return Image.fromarray(_sixteen_to_eight(np.asarray(im), rel, target), 'L')
        if im.mode == 'F':
          raise UserError(f'image folder {target}: {rel} holds float pixels (Pillow mode '
                          f'F); save it as 8- or 16-bit PNG or JPEG')
        return im.convert('L') if im.mode in ('L', '1') else im.convert('RGB')
  except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
    raise UserError(f'image folder {target}: {rel} is too large to read ({_reason(e)}); '
                    f'shrink it (images are {Image.MAX_IMAGE_PIXELS} pixels at most) or '
                    f'remove it') from None
  except (UnidentifiedImageError, OSError, ValueError, SyntaxError, MemoryError) as e:
    raise _unreadable(target, rel, _reason(e)) from None


def _sixteen_to_eight(pixels, rel, target) -> np.ndarray:
  low, high = int(pixels.min()), int(pixels.max())
  if low < 0 or high > 65535:
    raise UserError(f'image folder {target}: {rel} holds 32-bit pixel values {low}..{high}, '
                    f'outside 16 bits; save it as an 8- or 16-bit PNG')
  return np.rint(pixels.astype(np.float64) / 257.0).astype(np.uint8)


def load_folder(settings, target) -> base.Dataset:
  from PIL import Image
  source = dict(kind='folder', **fingerprint('folder', target))
  root = source['path']
  train, test = _classes(root, 'train', target), _classes(root, 'test', target)
  names = sorted(train)
  for split, classes in (('train', train), ('test', test)):
    extra = sorted(set(classes) - set(train))
    if extra:
      raise UserError(f'image folder {target}: test/ has classes {", ".join(extra)} '
                      f'that train/ lacks; give every class training images')
    missing = [c for c in names if not classes.get(c)]
    if missing:
      raise UserError(f'image folder {target}: class {", ".join(missing)} has no images '
                      f'in {split}/ ({", ".join(IMAGE_SUFFIXES)}); give every class '
                      f'images in both train/ and test/')
  size = settings.image_size
  files = [(f'{split}/{c}/{f}', split, i) for split, classes in (('train', train), ('test', test))
           for i, c in enumerate(names) for f in classes[c]]
  images = [_read_image(root, rel, target) for rel, _, _ in files]
  grey = all(im.mode == 'L' for im in images)
  if size:
    images = [im.resize((size, size), Image.BILINEAR) for im in images]
  sizes = sorted({im.size for im in images})
  if len(sizes) > 1:
    first = next(rel for (rel, _, _), im in zip(files, images) if im.size == sizes[-1])
    raise UserError(f'image folder {target}: images differ in size ({sizes[0][0]}x'
                    f'{sizes[0][1]}, {first} is {sizes[-1][0]}x{sizes[-1][1]}); set '
                    f'--config.image_size=N to resize all to NxN')
  arrays = np.stack([np.asarray(im if grey else im.convert('RGB'), np.uint8) for im in images])
  if grey:
    arrays = arrays[..., None]
  ys = np.array([i for _, _, i in files], np.int32)
  is_train = np.array([s == 'train' for _, s, _ in files])
  source.update(classes=names, image_size=size)
  return _dataset(settings.dataset, arrays[is_train], ys[is_train], arrays[~is_train],
                  ys[~is_train], len(names), source)


LOADERS = {'npz': load_npz, 'tfds': load_tfds, 'folder': load_folder}
