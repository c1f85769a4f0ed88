"""Command-line glue: every failure the user can fix is one line, exit 2.

main() is the launch: the `dash-jax` console script and launch.py.
"""
from __future__ import annotations

import contextlib
import difflib
import errno
import importlib.util
import os
import re
import sys

from absl import flags
from absl import logging as absl_logging

from dash_jax import signals
from dash_jax.errors import UserError
from dash_jax.launch import config as config_lib

_LIST_OVERRIDE = re.compile(r'--config\.(\w+)=(.*,.*)', re.S)


_FIXABLE_OS_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)


def fail(message: str, code: int = 2):
  print(f'error: {message}', file=sys.stderr)
  sys.exit(code)


def _one_line(exc: BaseException) -> str:
  text = str(exc).strip()
  if isinstance(exc, AttributeError):  # ml_collections repr()s its message
    text = text.strip('\'"').replace('\\n', '\n').replace("\\'", "'")
  lines = [l.strip() for l in text.splitlines() if l.strip()]
  return ' '.join(lines) if lines else type(exc).__name__


def split_lists(argv) -> tuple[list, dict]:
  """(argv, {field: 'a,b'}): `--config.FIELD=a,b` overrides of fields that
  take one value come out of argv, as ml_collections would refuse a list on
  a float field; the launch's own list fields (train_type...) stay."""
  rest, lists = [], {}
  for arg in argv:
    m = _LIST_OVERRIDE.fullmatch(arg)
    if m and m.group(1) not in config_lib.LIST_FIELDS and not _names_a_path(m.group(2)):
      lists[m.group(1)] = m.group(2)
    else:
      rest.append(arg)
  return rest, lists


def _names_a_path(value: str) -> bool:
  """Whether `value` (after a dataset kind's 'npz:' or 'folder:') is a file
  or folder that exists: a comma in its name makes no list."""
  for prefix in ('npz:', 'folder:'):
    if value.startswith(prefix):
      value = value[len(prefix):]
  return os.path.exists(os.path.expanduser(value.strip()))


def _parse_element(field, raw, text, like):
  flag = f'--config.{field}={raw}'
  if not text:
    raise UserError(f'{flag} has an empty element; list values like '
                    f'--config.{field}=0.1,0.5')
  try:
    if isinstance(like, bool):
      if text.lower() not in ('true', 'false', '1', '0'):
        raise ValueError
      return text.lower() in ('true', '1')
    if isinstance(like, (int, float, str)):
      return type(like)(text)
  except ValueError:
    kind = type(like).__name__
    raise UserError(f'{flag}: {text!r} is not {"an" if kind == "int" else "a"} '
                    f'{kind}; give {kind} values') from None
  raise UserError(f'{flag}: config.{field} is a {type(like).__name__} and takes '
                  f'no list; give one value')


def apply_lists(config, lists: dict) -> None:
  """Sets each `field: 'a,b'` of split_lists as a swept field, its values
  typed like the field's declared value."""
  for field, raw in lists.items():
    if field not in config:
      close = difflib.get_close_matches(field, list(config.keys()), n=1)
      hint = f'; did you mean "{close[0]}"?' if close else ''
      raise UserError(f'unknown config field {field!r} in --config.{field}={raw}{hint}')
    declared = config[field]
    like = declared[0] if isinstance(declared, (list, tuple)) and declared else declared
    text = raw.strip()
    if text[:1] + text[-1:] in ('()', '[]'):
      text = text[1:-1]
    config_lib.set_sweep(config, field, [_parse_element(field, raw, t.strip(), like)
                                         for t in text.split(',')])


def _config_path(argv) -> str:
  """The --config file named on the command line ('' if none)."""
  for i, arg in enumerate(argv):
    if arg.startswith('--config='):
      return arg.split('=', 1)[1]
    if arg == '--config' and i + 1 < len(argv):
      return argv[i + 1]
  return ''


def _config_file_error(path: str, text: str) -> str:
  """One line for a config file whose get_config() raised (ml_collections
  puts the whole traceback in its flag error): the file, the exception, the fix."""
  file, _, arg = path.partition(':')
  last = [l.strip() for l in text.strip().splitlines() if l.strip()][-1]
  if arg and re.search(r'get_config\(\) takes 0 positional arguments', last):
    return (f'config file {file}: its get_config() takes no argument, but --config '
            f'{path} passes {arg!r} after the colon; drop ":{arg}" (pass --config {file})')
  where = f' with argument {arg!r}' if arg else ''
  return f'config file {file}: get_config(){where} raised {last}; fix the file or the argument'


@contextlib.contextmanager
def _absl_quiet():
  level = absl_logging.get_verbosity()
  absl_logging.set_verbosity(absl_logging.ERROR)
  try:
    yield
  finally:
    absl_logging.set_verbosity(level)


def parse_flags(argv):
  """absl's parser, but a bad config file or override key is one line; any
  field may be given as a list (a sweep)."""
  path = _config_path(argv)
  argv, lists = split_lists(argv)
  sys_argv, sys.argv = sys.argv, argv  # ml_collections reads overrides from sys.argv
  try:
    with _absl_quiet():  # its warning about a None config would be a second line
      rest = flags.FLAGS(argv)
    _check_loaded_config(path)
    flags.FLAGS.config.get('experiment')  # a file that failed to load raises here
    apply_lists(flags.FLAGS.config, lists)
    config_lib.sweeps(flags.FLAGS.config)  # a list on a field that takes one value
    return rest
  except UserError as e:
    fail(str(e))
  except Exception as e:  # noqa: BLE001 - the config file or an override failed
    try:
      _check_loaded_config(path, fields=False)  # get_config() returned no ConfigDict?
    except UserError as not_config:
      fail(str(not_config))
    _fail_parsing(e, path)
  finally:
    sys.argv = sys_argv


def _check_loaded_config(path, fields=True) -> None:
  """UserError for a config file whose get_config() returned something else
  than a ConfigDict, or (`fields`) whose config sets a field no experiment
  reads."""
  import ml_collections
  try:
    value = flags.FLAGS['config'].value
  except Exception:  # noqa: BLE001 - not loaded: the parse error says why
    return
  if value is None or type(value).__module__.startswith('ml_collections.config_flags'):
    return  # none, or its stand-in for a file that failed to load: the error says why
  if not isinstance(value, ml_collections.ConfigDict):
    raise UserError(_not_a_config_dict(path, type(value).__name__))
  if fields:
    config_lib.check_known_fields(value, f'config file {path}' if path else 'the config')


def _not_a_config_dict(path, kind) -> str:
  return (f'config file {path}: get_config() returned {kind}, not a ConfigDict; make it '
          f'return an ml_collections.ConfigDict')


def _fail_parsing(e, path):
  """fail() with one line for what parsing the flags raised."""
  if isinstance(e, flags.Error):
    if 'must have a value other than None' in str(e) and path:
      fail(f'config file {path}: get_config() returned None; make it return the '
           f'ml_collections.ConfigDict')
    if 'Error whilst parsing config file' in str(e) and path:
      fail(_config_file_error(path, str(e)))
    fail(f'{_one_line(e)} (see --helpfull)')
  if isinstance(e, AttributeError):  # misspelled --config.FIELD
    if "attribute 'get_config'" in str(e):
      fail(f'config file {path} has no get_config(); define one that returns an '
           f'ml_collections.ConfigDict (see configs/default.py)')
    fail(f'unknown config field: {_one_line(e)}')
  if isinstance(e, SyntaxError):
    fail(f'config file {e.filename} line {e.lineno}: {e.msg}; fix the file')
  message = _one_line(e)
  other = re.search(r"Attribute <class '([\w.]+)'>\.\w+ does not exist", message)
  if other and path:  # an override on what get_config() returned instead of a config
    fail(_not_a_config_dict(path, other.group(1)))
  missing = re.search(r"No such file or directory: '([^']+)'", message)
  if missing:
    fail(f'config file {missing.group(1)} not found; pass an existing '
         f'--config file, e.g. configs/default.py')
  fail(f'could not load the config: {type(e).__name__}: {message}')


def run_or_fail(fn, *args):
  """Call fn; a UserError (or config ValueError) becomes one line, exit 2;
  Ctrl-C and SIGTERM one line, exit 130 / 143 (dash_jax/signals.py)."""
  signals.install()
  try:
    return fn(*args)
  except (UserError, ValueError) as e:
    fail(_one_line(e))
  except OSError as e:  # the workdir's disk or permissions, found while writing
    if e.errno not in _FIXABLE_OS_ERRORS:
      raise
    fail(f'{e.filename or "a file"}: {e.strerror}; fix that and re-run the same '
         f'command to resume')
  except signals.Terminated:
    signals.exit_now(*signals.SAVED)
  except KeyboardInterrupt:  # only where the handler could not be installed
    signals.exit_now(*signals.INTERRUPTED)


# ------------------------------------------------------------------ launch


def shipped_configs() -> dict:
  """{name: path} of the configs shipped with the package (configs/*.py)."""
  spec = importlib.util.find_spec('configs')
  if spec is None or not spec.submodule_search_locations:
    return {}
  out = {}
  for folder in spec.submodule_search_locations:
    for f in sorted(os.listdir(folder)):
      path = os.path.join(folder, f)
      if f.endswith('.py') and f != '__init__.py' and _has_get_config(path):
        out.setdefault(f[:-3], path)
  return out


def _has_get_config(path) -> bool:
  with open(path) as f:
    return 'def get_config(' in f.read()  # paper.py: a helper, not a setting


def resolve_config(value: str) -> str:
  """`--config default` (a shipped config's name) -> its file; a path (or a
  name that is a file here) stays as given. ml_collections' `FILE:ARGS`
  suffix is kept."""
  name, sep, rest = value.partition(':')
  if not name or os.path.isfile(name) or name.endswith('.py') or os.sep in name:
    return value
  shipped = shipped_configs()
  if name not in shipped:
    close = difflib.get_close_matches(name, list(shipped), n=1)
    hint = f'did you mean "{close[0]}"? ' if close else ''
    fail(f'config {name!r} is neither a file nor a shipped config; {hint}'
         f'pass a config file (configs/default.py) or one of: {", ".join(shipped)}')
  return shipped[name] + sep + rest


def resolve_config_arg(argv) -> list:
  """argv with its --config value resolved (resolve_config)."""
  argv = list(argv)
  for i, arg in enumerate(argv):
    if arg.startswith('--config='):
      argv[i] = '--config=' + resolve_config(arg.split('=', 1)[1])
      break
    if arg == '--config' and i + 1 < len(argv):
      argv[i + 1] = resolve_config(argv[i + 1])
      break
  return argv


def _define_flags():
  from ml_collections import config_flags
  if 'config' not in flags.FLAGS:  # main() may run more than once in a process (tests)
    config_flags.DEFINE_config_file('config', None, 'Config file, or the name of a '
                                    'shipped one (default, cifar10_resnet18, ...).',
                                    lock_config=True)
    flags.DEFINE_string('workdir', None, 'Where runs, checkpoints and tables go.')
    flags.mark_flags_as_required(['config', 'workdir'])


def _launch(argv):
  del argv
  absl_logging.set_verbosity(absl_logging.WARNING)  # tfds reports every file it opens
  packed = flags.FLAGS.config.get('runs_per_device', 1)
  if packed > 1:  # before JAX starts: the processes share the device memory
    os.environ.setdefault('XLA_PYTHON_CLIENT_MEM_FRACTION', f'{0.9 / packed:.2f}')
  import dash_jax  # TensorFlow loads only to read a dataset, and hides the GPUs
  run_or_fail(dash_jax.run, flags.FLAGS.config, flags.FLAGS.workdir)


def main(argv=None):
  """dash-jax --config CONFIG --workdir DIR [--config.FIELD=VALUE ...]

  CONFIG: a config file (configs/default.py) or a shipped config's name
  (default). Re-running the same command resumes unfinished runs and skips
  finished ones. --help: every field, its default and meaning (fieldhelp)."""
  signals.install()  # Ctrl-C: one line, exit 130 (launch.py installs it earlier still)
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')  # before TensorFlow loads
  # TF only reads data; its oneDNN banner would break one-line errors on stderr.
  os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '0')
  argv = list(sys.argv if argv is None else argv)
  if any(a in ('--help', '-h', '--helpshort', '-?') for a in argv[1:]):
    from dash_jax.launch import fieldhelp
    print(fieldhelp.help_text(), end='')
    sys.exit(0)
  from absl import app
  _define_flags()
  flags.FLAGS.unparse_flags()  # a second main() in one process starts afresh
  argv = resolve_config_arg(argv)
  app.run(_launch, argv=argv, flags_parser=parse_flags)
