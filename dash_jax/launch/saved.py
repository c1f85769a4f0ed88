"""What earlier runs left, read back: a run's results.json and config.json,
checked and upgraded to today's fields (config.upgrade), for the launch
(finished runs, the workdir guard) and the report alike."""
from __future__ import annotations

from dash_jax.errors import UserError
from dash_jax.results import read_json
from dash_jax.launch import config as config_lib


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


def seed_of(config: dict) -> int:
  """A run's seed from its results.json config (`seeds` holds its one seed;
  earlier versions also wrote `seed`)."""
  return int(config['seed'] if 'seed' in config else config['seeds'])
