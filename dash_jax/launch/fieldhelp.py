"""`dash-jax --help`: every config field, its default and a one-line meaning,
read from configs/default.py itself (its values and the comments beside
them), so the help cannot drift from the file that declares the fields.

A field's meaning is its trailing comment (with the indented comment lines
that continue it); a field without one takes the comment block right above
it, less a section heading on the block's first line where the block opens
a paragraph ("# Model." above lines about the field).
Fields are grouped as dash_jax/launch/config.py groups them: science fields change
a run's numbers, execution fields (config.EXECUTION_FIELDS) never do.
"""
from __future__ import annotations

import ast
import io
import re
import tokenize

from dash_jax.launch import config as config_lib

USAGE = """usage: dash-jax --config CONFIG --workdir DIR [--config.FIELD=VALUE ...]
       (or: python launch.py --config CONFIG --workdir DIR ...)

CONFIG is a config file (configs/default.py) or a shipped config's name
(default, mnist1d, digits, cifar10_resnet18, ...). Re-running the same command
resumes unfinished runs and skips finished ones. Any field below can be
overridden (--config.learning_rate=0.1); a science field given as a list
(--config.dash_lambda=0.1,0.3) sweeps it: one launch runs the grid.
"""


def _comments(source: str) -> dict:
  """{line number: (column, text, alone on its line)} of every comment."""
  out = {}
  for tok in tokenize.generate_tokens(io.StringIO(source).readline):
    if tok.type == tokenize.COMMENT:
      line = tok.line[:tok.start[1]]
      out[tok.start[0]] = (tok.start[1], tok.string.lstrip('#').strip(), not line.strip())
  return out


def _assignments(source: str) -> list:
  """[(field, first line, last line, column)] of each `config.FIELD = ...`."""
  out = []
  for node in ast.walk(ast.parse(source)):
    if isinstance(node, ast.Assign) and len(node.targets) == 1:
      t = node.targets[0]
      if (isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name)
          and t.value.id == 'config'):
        out.append((t.attr, node.lineno, node.end_lineno, node.col_offset))
  return sorted(out, key=lambda a: a[1])


def _first_sentence(text: str) -> str:
  parts = re.split(r'(?<=[.;])\s+(?=[A-Z])', text.strip(), maxsplit=1)
  return parts[0].strip()


def meanings(source: str) -> dict:
  """{field: one-line meaning} from the comments of a config file's source."""
  comments, lines = _comments(source), source.splitlines()
  blank = lambda n: n < 1 or not lines[n - 1].strip()
  out = {}
  for field, first, last, col in _assignments(source):
    trailing = []
    if last in comments and not comments[last][2]:
      trailing.append(comments[last][1])
      n = last + 1  # indented comment lines under it continue it
      while n in comments and comments[n][2] and comments[n][0] > col:
        trailing.append(comments[n][1])
        n += 1
    above, n = [], first - 1
    while n in comments and comments[n][2] and comments[n][0] == col:
      above.insert(0, comments[n][1])
      n -= 1
    if len(above) > 1 and blank(n) and _is_heading(above[0]):
      above = above[1:]  # '# Data.' then what the field means
    text = ' '.join(trailing) or ' '.join(above)
    out[field] = _first_sentence(text)
  return out


def _is_heading(line: str) -> bool:
  """A section heading: one short line ending in '.' or ':' ('# Model.')."""
  return len(line.split()) <= 10 and line.endswith(('.', ':'))


def _default_text(value) -> str:
  return repr(value) if isinstance(value, str) else str(value)


def help_text(path: str | None = None) -> str:
  """The usage line, then every field of configs/default.py in two groups."""
  path = path or config_lib.DEFAULT_CONFIG
  with open(path) as f:
    meaning = meanings(f.read())
  values = config_lib.defaults()
  science = [f for f in values if f not in config_lib.EXECUTION_FIELDS]
  execution = [f for f in values if f in config_lib.EXECUTION_FIELDS]
  order = list(meaning)
  rank = lambda f: order.index(f) if f in order else len(order)
  width = 30  # a longer field=default pushes its meaning along
  out = [USAGE, f'Config fields, their defaults ({path}) and meanings:']
  for title, fields in (('Science fields (change a run\'s numbers):', science),
                        ('Execution fields (never change the numbers; a workdir\'s runs '
                         'resume under other values):', execution)):
    out.append('\n' + title)
    for field in sorted(fields, key=rank):
      head = f'{field}={_default_text(values[field])}'
      out.append(f'  --config.{head:<{width}} {meaning.get(field, "")}'.rstrip())
  return '\n'.join(out) + '\n'
