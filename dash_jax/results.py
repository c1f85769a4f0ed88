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

from dash_jax.launch import config as config_lib
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


def read_run(path) -> dict:
  """A run's results.json, checked for what later steps read, its config
  upgraded (config.upgrade). The one reader and its one rule: a damaged file
  is a one-line UserError naming it, for the launch and the report alike. A
  run of another experiment (config.experiment) is checked for its config only."""
  fix = 'delete it to recompute that run'
  res = read_json(path, fix)
  ok = (isinstance(res, dict) and isinstance(res.get('config'), dict)
        and isinstance(res.get('experiments'), list) and 'experiment' in res['config'])
  if ok and res['config']['experiment'] == 'incremental':
    number = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
    ok = (all(k in res['config'] for k in ('dataset', 'train_type', 'optimizer', 'seeds',
                                           'num_chunks'))
          and bool(res['experiments'])
          and all(isinstance(e, dict) and number(e.get('test_acc')) and number(e.get('steps'))
                  for e in res['experiments']))
  if not ok:
    raise UserError(f'{path} is damaged (not a run\'s config and experiments); {fix}')
  return dict(res, config=config_lib.upgrade(res['config']))


def read_run_config(path) -> dict:
  """A run's config.json (the guard compares it with the launch's)."""
  fix = 'delete it (the run folder keeps its checkpoints) and relaunch'
  saved = read_json(path, fix)
  if not isinstance(saved, dict):
    raise UserError(f'{path} is damaged (not a config); {fix}')
  return config_lib.upgrade(saved)


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


def seed_of(config: dict) -> int:
  """A run's seed from its results.json config (`seeds` holds its one seed;
  earlier versions also wrote `seed`)."""
  return int(config['seed'] if 'seed' in config else config['seeds'])
