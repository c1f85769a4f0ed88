"""What a run leaves on disk for people and later launches: JSON files.

A run folder holds config.json (written when the run starts: it guards the
folder against another config) and results.json (written once, when the run
has finished: a relaunch reads it instead of training again).
"""
from __future__ import annotations

import json
import os

import numpy as np

RESULTS = 'results.json'
RUN_CONFIG = 'config.json'
# Fields of an experiment's record that say how it ran, not what it computed
# (they differ between a resumed and an uninterrupted run, or a warm process).
EXECUTION_RECORD_FIELDS = ('wall_s', 'compiles', 'compile_s')


def summarise(experiments) -> dict:
  """A run's headline figures (the paper's: last and mean over experiments)."""
  acc = [e['test_acc'] for e in experiments]
  steps = [e['steps'] for e in experiments]
  return {'test_acc_last': acc[-1], 'test_acc_mean': float(np.mean(acc)),
          'steps_last': steps[-1], 'steps_mean': float(np.mean(steps)),
          'steps_total': int(np.sum(steps)),
          'compiles_total': int(sum(e.get('compiles', 0) for e in experiments))}


def read_json(path):
  with open(path) as f:
    return json.load(f)


def write_json(path, obj):
  """Atomic: a reader never sees half a file."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    json.dump(obj, f, indent=2)
  os.replace(tmp, path)


def seed_of(config: dict) -> int:
  """A run's seed from its results.json config (`seeds` holds its one seed;
  earlier versions also wrote `seed`)."""
  return int(config['seed'] if 'seed' in config else config['seeds'])
