"""What a run leaves on disk for people and later launches: JSON files.

A run folder holds config.json (written when the run starts: it guards the
folder against another config) and results.json (written once, when the run
has finished: a relaunch reads it instead of training again).
"""
from __future__ import annotations

import contextlib
import json
import os

import numpy as np

from dash_jax.errors import UserError

RESULTS = 'results.json'
RUN_CONFIG = 'config.json'
# Fields of an experiment's record that say how it ran, not what it computed
# (they differ between a resumed and an uninterrupted run, or a warm process).
EXECUTION_RECORD_FIELDS = ('wall_s', 'compiles', 'compile_s')


# A run's headline figures in its summary (tables, HParams, the checks on read).
SUMMARY_FIELDS = ('test_acc_last', 'test_acc_mean', 'steps_last', 'steps_mean',
                  'steps_total')


def summarise(experiments) -> dict:
  """A run's headline figures (the paper's: last and mean over experiments)."""
  acc = [e['test_acc'] for e in experiments]
  steps = [e['steps'] for e in experiments]
  return {'test_acc_last': acc[-1], 'test_acc_mean': float(np.mean(acc)),
          'steps_last': steps[-1], 'steps_mean': float(np.mean(steps)),
          'steps_total': int(np.sum(steps)),
          'compiles_total': int(sum(e.get('compiles', 0) for e in experiments)),
          # experiments stopped by max_epoch short of converge_acc
          'unconverged': sum(not e.get('converged', True) for e in experiments)}


def read_json(path, fix='delete it'):
  """The file's JSON; a damaged file is one line naming it and `fix`."""
  try:
    with open(path) as f:
      return json.load(f)
  except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError is a ValueError
    raise UserError(f'{path} is damaged ({type(e).__name__}: {e}); {fix}') from None
  except IsADirectoryError:
    raise UserError(f'{path} is a folder, not a file; {fix}') from None


def write_json(path, obj):
  """Atomic: a reader never sees half a file."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  tmp = f'{path}.{os.getpid()}.tmp'
  try:
    with open(tmp, 'w') as f:
      json.dump(obj, f, indent=2)
    os.replace(tmp, path)
  except BaseException as e:
    with contextlib.suppress(OSError):
      os.remove(tmp)  # a full disk leaves nothing half-written behind
    if isinstance(e, OSError):  # a full or read-only disk: one line naming the file
      raise UserError(f'writing {path} failed ({e.strerror or e}); fix that and re-run '
                      f'the same command') from None
    raise
