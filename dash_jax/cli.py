"""Command-line glue: every failure the user can fix is one line, exit 2."""
from __future__ import annotations

import difflib
import re
import sys

from absl import flags

from dash_jax import config as config_lib
from dash_jax.errors import UserError

_LIST_OVERRIDE = re.compile(r'--config\.(\w+)=(.*,.*)', re.S)


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
    if m and m.group(1) not in config_lib.LIST_FIELDS:
      lists[m.group(1)] = m.group(2)
    else:
      rest.append(arg)
  return rest, lists


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


def parse_flags(argv):
  """absl's parser, but a bad config file or override key is one line; any
  field may be given as a list (a sweep)."""
  argv, lists = split_lists(argv)
  sys_argv, sys.argv = sys.argv, argv  # ml_collections reads overrides from sys.argv
  try:
    rest = flags.FLAGS(argv)
    flags.FLAGS.config.get('experiment')  # a file that failed to load raises here
    apply_lists(flags.FLAGS.config, lists)
    config_lib.sweeps(flags.FLAGS.config)  # a list on a field that takes one value
    return rest
  except UserError as e:
    fail(str(e))
  except flags.Error as e:
    fail(f'{_one_line(e)} (see --helpfull)')
  except AttributeError as e:  # misspelled --config.FIELD
    fail(f'unknown config field: {_one_line(e)}')
  except SyntaxError as e:
    fail(f'config file {e.filename} line {e.lineno}: {e.msg}; fix the file')
  except Exception as e:  # noqa: BLE001 - the config file itself failed
    message = _one_line(e)
    missing = re.search(r"No such file or directory: '([^']+)'", message)
    if missing:
      fail(f'config file {missing.group(1)} not found; pass an existing '
           f'--config file, e.g. configs/default.py')
    fail(f'could not load the config: {type(e).__name__}: {message}')
  finally:
    sys.argv = sys_argv


def run_or_fail(fn, *args):
  """Call fn; a UserError (or config ValueError) becomes one line, exit 2."""
  try:
    return fn(*args)
  except (UserError, ValueError) as e:
    fail(str(e))
  except KeyboardInterrupt:
    fail('interrupted; re-run the same command to resume', code=130)
