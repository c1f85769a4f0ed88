"""The launch's workdir: usable before any compute, guarded against runs
made with another config, claimed under the launch lock, and each run's
claim and finished results."""
from __future__ import annotations

import contextlib
import os
import tempfile

from dash_jax import checkpoint, results
from dash_jax.errors import UserError
from dash_jax.launch import config as config_lib
from dash_jax.launch import locks, saved


def usable_workdir(workdir: str) -> str:
  """Refuse, before any compute and writing nothing, a workdir that cannot
  hold the launch's files: empty, a file, under a file, or not writable."""
  if not workdir or not workdir.strip():
    raise UserError("--workdir is empty; pass a folder for the runs, e.g. --workdir runs/one")
  path = os.path.abspath(os.path.expanduser(workdir))
  if os.path.exists(path) and not os.path.isdir(path):
    raise UserError(f'--workdir {workdir} is a file, not a folder; pass a folder')
  existing = path
  while not os.path.exists(existing):
    existing = os.path.dirname(existing)
  if not os.path.isdir(existing):
    raise UserError(f'--workdir {workdir} is under {existing}, which is a file; '
                    f'pass a folder path')
  try:
    with tempfile.TemporaryFile(dir=existing):
      pass
  except OSError as e:
    raise UserError(f'--workdir {workdir}: cannot write in {existing} ({e.strerror}); '
                    f'pass a writable folder') from None
  return workdir


def check_workdir(config, runs, log=print, dry_run=False):
  """Refuse a workdir whose runs were made with another config, unless
  config.allow_config_change: then those runs are moved aside and redone
  (not with dry_run, which only refuses). Other than a dry run, call it
  holding the launch lock."""
  for run in runs:
    run_dir = run.folder
    path = os.path.join(run_dir, results.RUN_CONFIG)
    if not os.path.exists(path):
      continue
    diff = config_lib.differing_fields(saved.read_run_config(path), run.recorded)
    if not diff:
      continue
    if not config.allow_config_change:
      raise UserError(
          f'{run_dir} was made with a different config ({"; ".join(diff)}); '
          f'use another --workdir, or --config.allow_config_change=True to '
          f'redo such runs (old folders are kept as NAME.replaced-N)')
    if dry_run:
      continue
    lock = locks.Lock(os.path.join(run_dir, locks.RUN_LOCK))
    if not lock.acquire(blocking=False):
      raise UserError(f'{run_dir} was made with a different config and another launch '
                      f'({lock.holder()}) is training it; wait for it to end, or '
                      f'use another --workdir')
    try:
      backup = checkpoint.free_name(run_dir + '.replaced', numbered=True)
      os.replace(run_dir, backup)
    finally:
      lock.release()
    log(f'{run.name}: config changed ({"; ".join(diff)}); old run kept in {backup}')


def launch_lock(workdir) -> locks.Lock:
  """Held while a launch checks and writes the runs' configs, and while it
  writes the tables: launches into one workdir take turns there."""
  return locks.Lock(os.path.join(workdir, locks.LAUNCH_LOCK))


def claim_workdir(config, workdir, runs, log=print) -> None:
  """The config guard and the runs' config.json, as one step under the
  launch lock: a launch with another config sees this one's configs."""
  with launch_lock(workdir):
    check_workdir(config, runs, log)
    for name in os.listdir(workdir):  # configs earlier versions handed workers in files
      if name.startswith('.workers-') and name.endswith('.pkl'):
        with contextlib.suppress(OSError):
          os.remove(os.path.join(workdir, name))
    for run in runs:
      path = os.path.join(run.folder, results.RUN_CONFIG)
      if not os.path.exists(path):
        results.write_json(path, run.recorded)


def finished(run):
  """The run's results if some process has finished it, else None."""
  path = os.path.join(run.folder, results.RESULTS)
  return saved.read_run(path) if os.path.exists(path) else None


def claim(group) -> locks.Claim:
  """The run locks of a group's runs, taken together."""
  return locks.Claim(os.path.join(r.folder, locks.RUN_LOCK) for r in group)


def check_claimed(runs) -> None:
  """Each claimed run's config.json, written if missing; one that another
  launch's config replaced meanwhile (allow_config_change) stops this one."""
  for run in runs:
    path = os.path.join(run.folder, results.RUN_CONFIG)
    if not os.path.exists(path):
      results.write_json(path, run.recorded)
    elif config_lib.differing_fields(saved.read_run_config(path), run.recorded):
      raise UserError(f'{run.folder} was claimed by a launch with another config while '
                      f'this one started; relaunch to see which config it holds')
