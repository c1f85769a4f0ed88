"""Reliability, fourth pass (issue 30): a user's data is never silently
wrong, no input or environment gives a traceback, packed launches are as safe
as plain ones, and the smaller items. One test (or more) per cause."""
import dataclasses
import os
import pickle
import sys
import zipfile

import numpy as np
import pytest
from PIL import Image

from dash_jax import data
from dash_jax.data import user
from dash_jax.errors import UserError
from dash_jax.launch import grid
from tests import helpers



def _load_refused(dataset, match, **fields):
  with pytest.raises(UserError, match=match) as e:
    data.load(helpers.user_config(dataset, **fields))
  assert '\n' not in str(e.value)
  return str(e.value)


# --------------------------------------------------------------- 1. labels


@pytest.mark.parametrize('dtype,value', [(np.int64, 2**32 + 1), (np.uint64, 2**63 + 1),
                                         (np.int64, 10**9), (np.int32, 60)])
def test_a_label_beyond_the_training_examples_is_named_not_wrapped(tmp_path, dtype, value):
  y = helpers.features(60)[1].astype(dtype)
  y[5] = value  # 2**32+1 and 2**63+1 became 1 in int32; 10**9 built set(range(10**9))
  path = helpers.write_npz(tmp_path / 'f.npz', y_train=y)
  _load_refused(path, rf'y_train holds label {value}, but there are only 60 training '
                r'examples and every class needs one')
  path = helpers.write_npz(tmp_path / 'g.npz', y_test=np.full(30, value, dtype))
  _load_refused(path, rf'y_test holds label {value}, but there are only 60 training')


def test_num_classes_beyond_the_training_examples_is_refused_before_counting(tmp_path):
  path = helpers.write_npz(tmp_path / 'f.npz')
  _load_refused(path, 'config.num_classes=1000000000 exceeds the 60 training examples',
                num_classes=10**9)


def test_labels_up_to_the_training_examples_still_load(tmp_path):
  x = np.arange(8, dtype=np.float32)[:, None]
  path = helpers.write_npz(tmp_path / 'f.npz', x_train=x, y_train=np.arange(8, dtype=np.uint64),
                   x_test=x[:2], y_test=np.array([7, 0], np.int64))
  ds = data.load(helpers.user_config(path))
  assert ds.num_classes == 8 and ds.test_y.tolist() == [7, 0]


# --------------------------------------------------------------- 2. 16-bit and huge images


def test_16_bit_pngs_are_scaled_to_8_bits_not_clipped(tmp_path):
  root = tmp_path / 'imgs'
  for split in ('train', 'test'):
    for c, level in (('a', 0), ('b', 1000), ('c', 65535)):
      (root / split / c).mkdir(parents=True)
      Image.fromarray(np.full((4, 4), level, np.uint16)).save(root / split / c / '0.png')
  assert Image.open(root / 'train' / 'b' / '0.png').mode.startswith('I')
  ds = data.load(helpers.user_config(f'folder:{root}'))
  assert ds.train_x.dtype == np.uint8 and ds.train_x.shape == (3, 4, 4, 1)
  assert ds.train_x[:, 0, 0, 0].tolist() == [0, 4, 255]  # round(v / 257): 1000 -> 4
  assert ds.test_x[:, 0, 0, 0].tolist() == [0, 4, 255]


def test_an_image_past_the_decompression_bomb_limit_is_one_line(tmp_path, monkeypatch):
  path = helpers.write_folder(tmp_path / 'imgs')
  Image.new('RGB', (40, 40)).save(tmp_path / 'imgs' / 'train' / 'dog' / '1.png')
  monkeypatch.setattr(Image, 'MAX_IMAGE_PIXELS', 500)  # a 19000x19000 PNG, made small
  _load_refused(f'folder:{path}', r'train/dog/1.png is too large to read \(Image size '
                r'\(1600 pixels\) exceeds limit')
  monkeypatch.setattr(Image, 'MAX_IMAGE_PIXELS', 1000)  # past the limit, not twice it: a warning
  with __import__('warnings').catch_warnings():
    __import__('warnings').simplefilter('error')
    _load_refused(f'folder:{path}', 'train/dog/1.png is too large to read')


# --------------------------------------------------------------- 5. inputs that gave tracebacks


def test_a_truncated_or_crc_damaged_npz_is_one_line(tmp_path):
  x = np.arange(4000, dtype=np.float64).reshape(1000, 4)
  path = helpers.write_npz(tmp_path / 'f.npz', x_train=x, y_train=np.arange(1000) % 3)
  blob = open(path, 'rb').read()
  (tmp_path / 'cut.npz').write_bytes(blob[:len(blob) // 2])
  _load_refused(str(tmp_path / 'cut.npz'), r'cut.npz is not a readable .npz file \(File is '
                r'not a zip file\); a damaged or cut-short copy\?')
  with zipfile.ZipFile(path) as z:
    offset = z.getinfo('x_train.npy').header_offset + 30 + len('x_train.npy') + 500
  damaged = bytearray(blob)
  damaged[offset] ^= 0xFF
  (tmp_path / 'crc.npz').write_bytes(bytes(damaged))
  _load_refused(str(tmp_path / 'crc.npz'), r"cannot read x_train \(Bad CRC-32 for file "
                r"'x_train.npy'\): the file is damaged")


def test_a_symlink_loop_in_an_image_folder_names_the_file(tmp_path):
  path = helpers.write_folder(tmp_path / 'imgs')
  loop = tmp_path / 'imgs' / 'train' / 'dog' / 'loop.png'
  os.symlink(loop, loop)
  _load_refused(f'folder:{path}', r'cannot read train/dog/loop.png \(Too many levels of '
                r'symbolic links\)')
  os.symlink(tmp_path / 'f.npz', tmp_path / 'f.npz')
  _load_refused(str(tmp_path / 'f.npz'), 'is a symbolic link that leads nowhere')


def test_examples_of_no_values_are_refused(tmp_path):
  path = helpers.write_npz(tmp_path / 'f.npz', x_train=np.zeros((60, 0)), x_test=np.zeros((30, 0)))
  _load_refused(path, r'x_train has shape \(60, 0\): examples of no values')


# --------------------------------------------------------------- 8. messages that name something


def test_a_non_utf8_file_name_is_named_escaped(tmp_path):
  path = helpers.write_folder(tmp_path / 'imgs')
  bad = os.fsdecode(b'caf\xe9.png')
  Image.new('RGB', (6, 6)).save(os.path.join(path, 'train', 'dog', bad))
  line = _load_refused(f'folder:{path}', r'the name train/dog/caf\\xe9.png is not UTF-8')
  line.encode()  # printable as it is


def test_values_beyond_float32_are_named_as_such_without_a_warning(tmp_path):
  x = helpers.features(60)[0]
  x[4, 1] = 1e300
  path = helpers.write_npz(tmp_path / 'f.npz', x_train=x)
  with __import__('warnings').catch_warnings():
    __import__('warnings').simplefilter('error')  # NumPy's overflow warning would raise
    _load_refused(path, r'x_train holds 1 values out of float32 range \(first 1e\+300 at '
                  r'index \(4, 1\)\)')


def test_a_text_file_as_npz_is_named_in_whole_words(tmp_path):
  (tmp_path / 'x.npz').write_text('a,b\n1,2\n')
  line = _load_refused(str(tmp_path / 'x.npz'), 'is not an .npz file')
  assert 'text, CSV or another format?' in line and 'pickled' not in line


def test_long_reasons_are_cut_at_a_word():
  reason = user._reason(ValueError('word ' * 40 + 'tail'))
  assert reason.endswith(' ...') and len(reason) <= 120
  assert all(w == 'word' for w in reason[:-4].split())


# --------------------------------------------------------------- 9. downloads offline


def _closed_port():
  import socket
  s = socket.socket()
  s.bind(('127.0.0.1', 0))
  port = s.getsockname()[1]
  s.close()  # nothing listens there now: a connection is refused at once
  return port


def test_an_offline_download_fails_in_seconds_naming_the_fix(monkeypatch):
  for var in ('https_proxy', 'HTTPS_PROXY', 'all_proxy', 'ALL_PROXY'):
    monkeypatch.delenv(var, raising=False)
  monkeypatch.setattr(user, 'ONLINE_PROBE', ('127.0.0.1', _closed_port()))
  with pytest.raises(UserError, match=r'--config.download=True cannot download tfds:mnist: '
                     r'this machine cannot reach 127.0.0.1:\d+ \(Connection refused\); '
                     r'prepare it where there is a network \(`tfds build mnist'):
    user.check_online('mnist')
  monkeypatch.setattr(user, 'ONLINE_PROBE', ('name.invalid', 443))  # no such name
  monkeypatch.setattr(user, 'ONLINE_TIMEOUT_S', 0.5)
  with pytest.raises(UserError, match='cannot reach name.invalid:443'):
    user.check_online('mnist')


def test_a_download_probes_before_tfds_downloads(monkeypatch):
  """load_tfds calls the probe before download_and_prepare (tfds mocked)."""
  import types
  calls = []

  class Builder:
    data_path = '/nowhere'

    def is_prepared(self):
      calls.append('is_prepared')
      return False

    def download_and_prepare(self):
      calls.append('download')

  fake = types.SimpleNamespace(builder=lambda name, data_dir: Builder(), __version__='x',
                               core=types.SimpleNamespace(registered=types.SimpleNamespace(
                                   DatasetNotFoundError=LookupError)))
  monkeypatch.setitem(sys.modules, 'tensorflow_datasets', fake)

  def offline(target):
    calls.append('probe')
    raise UserError('offline')
  monkeypatch.setattr(user, 'check_online', offline)
  with pytest.raises(UserError, match='offline'):
    user.load_tfds(helpers.user_config('tfds:mnist', download=True), 'mnist')
  assert calls == ['is_prepared', 'probe']


# --------------------------------------------------------------- 4, 8, 10. config files and flags


def _parse(capsys, *argv):
  """dash_jax.launch.cli's flag parsing of `launch.py ARGV` (no launch): (exit code,
  the config, stderr)."""
  from absl import flags

  from dash_jax.launch import cli
  cli._define_flags()
  for name in [n for n in flags.FLAGS if n.startswith('config.')]:
    delattr(flags.FLAGS, name)
  sys.modules.pop('config_config', None)
  capsys.readouterr()
  try:
    cli.parse_flags(['launch.py', *cli.resolve_config_arg(list(map(str, argv)))])
    code = 0
  except SystemExit as e:
    code = e.code
  return code, flags.FLAGS.config, capsys.readouterr().err


def _config_file(tmp_path, body):
  path = tmp_path / 'my_config.py'
  path.write_text('from configs.digits import get_config as digits\n\n\n'
                  'def get_config():\n' + body)
  return path


def test_a_misspelled_field_in_a_config_file_is_refused(tmp_path, capsys):
  path = _config_file(tmp_path, '  c = digits()\n  c.trian_type = "dash"\n  return c\n')
  code, _, err = _parse(capsys, '--config', path, '--workdir', tmp_path / 'w')
  assert code == 2 and err == (f'error: config file {path} sets unknown config field '
                               f"'trian_type'; did you mean \"train_type\"? (fields and their "
                               f'defaults: configs/default.py)\n')
  path = _config_file(tmp_path, '  c = digits()\n  c.train_type = "dash"\n  return c\n')
  code, config, err = _parse(capsys, '--config', path, '--workdir', tmp_path / 'w')
  assert code == 0 and config.train_type == 'dash' and err == ''


def test_a_misspelled_field_is_refused_by_the_api_too(tiny_config, tmp_path):
  import dash_jax
  with tiny_config.unlocked():
    tiny_config.lerning_rate = 0.5
  with pytest.raises(UserError, match='unknown config field \'lerning_rate\'; did you mean '
                     '"learning_rate"'):
    dash_jax.run(tiny_config, str(tmp_path / 'w'))
  assert not os.path.exists(tmp_path / 'w')


def test_the_synthetic_configs_fields_are_known(tmp_path, capsys):
  code, config, err = _parse(capsys, '--config', 'synthetic', '--workdir', tmp_path / 'w',
                             '--config.num_experiments=3')
  assert code == 0 and err == '' and config.num_experiments == 3


@pytest.mark.parametrize('extra', [[], ['--config.progress=False']])
def test_get_config_returning_no_config_dict_says_so(tmp_path, capsys, extra):
  path = _config_file(tmp_path, '  return 5\n')
  code, _, err = _parse(capsys, '--config', path, '--workdir', tmp_path / 'w', *extra)
  assert code == 2 and err == (f'error: config file {path}: get_config() returned int, '
                               f'not a ConfigDict; make it return an ml_collections.ConfigDict\n')


def test_a_comma_in_a_file_name_is_no_list(tmp_path, capsys):
  from dash_jax.launch import cli
  path = helpers.write_npz(tmp_path / 'a,b.npz')
  folder = helpers.write_folder(tmp_path / 'im,gs')
  for value in (path, f'npz:{path}', f'folder:{folder}'):
    assert cli.split_lists([f'--config.dataset={value}']) == ([f'--config.dataset={value}'], {})
    code, config, err = _parse(capsys, '--config', 'digits', '--workdir', tmp_path / 'w',
                               f'--config.dataset={value}')
    assert code == 0 and config.dataset == value and err == ''
  assert cli.split_lists([f'--config.dataset={tmp_path}/c,d.npz'])[1] == {  # none such
      'dataset': f'{tmp_path}/c,d.npz'}
  assert cli.split_lists(['--config.learning_rate=0.1,0.5'])[1] == {'learning_rate': '0.1,0.5'}


# --------------------------------------------------------------- 3, 7, 11. packed workers


def _fake_worker(code_text, error=b''):
  """A finished worker process: exits as `code_text` says, having sent `error`."""
  import subprocess
  read_fd, write_fd = os.pipe()
  w = subprocess.Popen([sys.executable, '-c', f'import os, sys\nos.write({write_fd}, {error!r})\n'
                        + code_text], pass_fds=(write_fd,))
  os.close(write_fd)
  w.error_fd, w.error = read_fd, None
  w.wait()
  return w


def test_a_worker_that_finds_the_file_changed_stops_the_launch_with_its_line(
    tiny_config, tmp_path, monkeypatch):
  import dash_jax
  from dash_jax.launch import workers
  message = b'data.npz changed while this launch ran (sha256 ...)'
  monkeypatch.setattr(workers, 'start', lambda config, workdir, sha, count: [
      _fake_worker('sys.exit(2)', message)])
  tiny_config.seeds = '0,1'
  with pytest.raises(UserError) as e:
    dash_jax.run(tiny_config, str(tmp_path), lambda *a: None)
  assert str(e.value) == message.decode()
  assert not os.path.exists(tmp_path / 'warm-sgd-seed0' / 'results.json')  # stopped before it


def test_a_worker_compares_the_data_it_loads_with_the_launchs_sha256(tmp_path, monkeypatch):
  import io
  from dash_jax import signals
  from dash_jax.launch import runs
  path = helpers.write_npz(tmp_path / 'f.npz')
  config = helpers.user_config(path)
  sha = data.fingerprint(path)
  helpers.write_npz(tmp_path / 'f.npz', x_train=helpers.features(60, seed=5)[0])  # replaced mid-launch
  os.utime(path, ns=(1, 1))  # another mtime, whatever the clock's resolution
  monkeypatch.setattr(sys, 'stdin', io.TextIOWrapper(io.BytesIO(pickle.dumps((config, sha)))))
  monkeypatch.setattr(signals, 'install', lambda quiet=False: None)
  monkeypatch.setattr(os, 'kill', lambda pid, sig: None)  # its parent watch: never here
  read_fd, write_fd = os.pipe()
  with pytest.raises(SystemExit) as e:
    runs.worker_main(str(tmp_path / 'w'), '1', str(os.getppid()), str(write_fd))
  os.close(write_fd)
  sent = os.read(read_fd, 1000).decode()
  os.close(read_fd)
  assert e.value.code == 2
  assert sent.startswith(f'{path} changed while this launch ran (sha256 '
                         f'{sha[:16]}... when it started, ')
  settings = grid.settings_of(config).data
  ds = data.load(settings)
  with pytest.raises(UserError, match='changed while this launch ran'):  # the parent's check
    data.check_unchanged(dataclasses.replace(settings, dataset_sha256=sha), ds)
  data.check_unchanged(dataclasses.replace(settings, dataset_sha256=data.fingerprint(path)),
                       ds)  # the launch's own file: fine


@pytest.mark.slow
def test_a_killed_worker_leaves_the_tables_to_the_parent(tiny_config, tmp_path, monkeypatch):
  import dash_jax
  from dash_jax.launch import workers
  tiny_config.num_chunks, tiny_config.max_epoch, tiny_config.width = 2, 1, 8
  monkeypatch.setattr(workers, 'start', lambda config, workdir, sha, count: [
      _fake_worker('os.kill(os.getpid(), 9)')])
  lines = []
  out = dash_jax.run(tiny_config, str(tmp_path), lines.append)
  assert out['warm-sgd-seed0']['experiments']
  assert ('note: worker process 1 ended early (killed by signal 9); this process finished '
          'its runs') in lines
  assert (tmp_path / 'summary.json').exists() and (tmp_path / 'summary.md').exists()
  assert any(line.startswith('report: ') for line in lines)


def test_workers_get_their_config_without_a_file_in_the_workdir(tiny_config, tmp_path):
  from dash_jax.launch import workers
  started = workers.start(tiny_config, str(tmp_path), '', 1)
  try:
    assert os.listdir(tmp_path) == []  # was .workers-*.pkl, left behind by kill -9
  finally:
    workers.stop(started, early=True)


# --------------------------------------------------------------- 6. a full disk: no background tracebacks


def _closed_loop_error():
  """What tensorstore's background thread raises into Orbax's closed loop:
  (the error, its traceback from asyncio's call_soon_threadsafe on)."""
  import asyncio
  loop = asyncio.new_event_loop()
  loop.close()
  try:
    loop.call_soon_threadsafe(print)
  except RuntimeError as e:
    return e, e.__traceback__.tb_next


def test_closed_loop_errors_of_a_failed_save_print_nothing(tmp_path, monkeypatch):
  """On a 40 KB tmpfs, 6 to 19 'RuntimeError: Event loop is closed' tracebacks
  came through sys.unraisablehook before the one-line save error."""
  import types

  from dash_jax import checkpoint
  printed = []
  monkeypatch.setattr(sys, 'unraisablehook', printed.append)
  monkeypatch.setattr(sys, 'excepthook', lambda *a: printed.append(a))
  checkpoint.RunCheckpoints(str(tmp_path / 'c')).manager.close()  # saving, not restoring
  error, tb = _closed_loop_error()
  sys.unraisablehook(types.SimpleNamespace(exc_type=RuntimeError, exc_value=error,
                                           exc_traceback=tb, err_msg=None, object=None))
  sys.excepthook(RuntimeError, error, tb)
  assert printed == []
  other = types.SimpleNamespace(exc_type=RuntimeError, exc_value=RuntimeError('other'),
                                exc_traceback=tb, err_msg=None, object=None)
  sys.unraisablehook(other)
  assert printed == [other]  # anything else is printed as before


# --------------------------------------------------------------- 5. JAX_PLATFORMS this machine lacks


@pytest.mark.parametrize('raised', [
    RuntimeError("Unable to initialize backend 'cuda': no CUDA-capable device is detected"),
    AssertionError()])  # JAX's second look, after a first failure was swallowed
def test_a_platform_jax_cannot_start_is_named(monkeypatch, raised):
  import jax

  from dash_jax import parallel

  def devices():
    raise raised
  monkeypatch.setattr(jax, 'devices', devices)
  monkeypatch.setenv('JAX_PLATFORMS', 'cuda')
  with pytest.raises(UserError, match=r'^JAX_PLATFORMS=cuda: JAX cannot start that platform '
                     r'\(.*\); unset JAX_PLATFORMS or set it to a platform this machine has'):
    parallel.check_platform()


@pytest.mark.parametrize('platform', ['bogus', 'cuda'])
def test_jax_platforms_without_that_platform_is_one_line_exit_2(tmp_path, platform):
  if platform == 'cuda' and any(os.path.exists(f'/dev/nvidia{i}') for i in range(8)):
    pytest.skip('this machine has a GPU')
  proc = helpers.run_launch('--config', 'digits', '--workdir', tmp_path / 'w',
                            '--config.train_type=warm', '--config.seeds=0',
                            JAX_PLATFORMS=platform, PYTHONPATH=helpers.ROOT)
  lines = proc.stderr.strip().splitlines()
  assert proc.returncode == 2 and len(lines) == 1, proc.stderr
  assert lines[0].startswith(f'error: JAX_PLATFORMS={platform}: JAX cannot start that platform')
  assert not (tmp_path / 'w').exists()


def test_a_launch_removes_worker_files_earlier_versions_left(tiny_config, tmp_path):
  from dash_jax.launch import grid, workdir
  (tmp_path / '.workers-abc.pkl').write_bytes(b'old')
  (tmp_path / 'notes.pkl').write_bytes(b'mine')
  workdir.claim_workdir(tiny_config, str(tmp_path), grid.plan(tiny_config, str(tmp_path)),
                        lambda *a: None)
  assert not (tmp_path / '.workers-abc.pkl').exists() and (tmp_path / 'notes.pkl').exists()
