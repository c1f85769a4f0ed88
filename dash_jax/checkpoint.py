"""Orbax checkpoints of one run: the train state plus where the run stands.

Saved after every experiment and every few epochs inside one, so a killed
run resumes and finishes with exactly the numbers of an uninterrupted one.
Writes are atomic (Orbax commits a step by renaming a finished temporary
folder); a step that fails to restore is reported and an older one is used.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import sys
import time
import traceback
from typing import Any, Callable, Optional

import jax
import numpy as np
import orbax.checkpoint as ocp

from dash_jax.errors import UserError


def _state_tree(state, key) -> dict:
  """The arrays worth saving (apply_fn and tx are code, not data)."""
  tree = {'params': state.params, 'batch_stats': state.batch_stats,
          'opt_state': state.opt_state, 'step': state.step, 'key': key}
  if state.init_params is not None:
    tree['init_params'] = state.init_params
  return tree


def free_name(path: str, numbered: bool = False) -> str:
  """A name beside `path` that nothing uses: `path` itself where free (unless
  `numbered`), else `path-N` for the lowest free N from 1."""
  if not numbered and not os.path.exists(path):
    return path
  i = 1
  while os.path.exists(f'{path}-{i}'):
    i += 1
  return f'{path}-{i}'


@contextlib.contextmanager
def quiet_orbax():
  """Orbax logs (absl, ERROR) and asyncio prints what a failed restore or
  save already raises; the caller reports it in one line instead."""
  loggers = [logging.getLogger(name) for name in ('absl', 'asyncio')]
  levels = [lg.level for lg in loggers]
  for lg in loggers:
    lg.setLevel(logging.CRITICAL)
  try:
    yield
  finally:
    for lg, level in zip(loggers, levels):
      lg.setLevel(level)


class _NotOrbax(logging.Filter):
  def filter(self, record):
    return '/orbax/' not in record.pathname.replace(os.sep, '/')


def _quiet_orbax_logs() -> None:
  """Orbax logs its failures (absl, ERROR, with tracebacks) and then raises
  them; a launch reports what it raises, in one line, so the logs go."""
  logger = logging.getLogger('absl')
  if not any(isinstance(f, _NotOrbax) for f in logger.filters):
    logger.addFilter(_NotOrbax())


def _closed_loop_error(kind, value, tb) -> bool:
  """Whether this is tensorstore completing a read or write into Orbax's
  event loop after Orbax closed it: RuntimeError('Event loop is closed') from
  asyncio's call_soon_threadsafe."""
  if kind is not RuntimeError or str(value) != 'Event loop is closed':
    return False
  frames = traceback.extract_tb(tb)
  return bool(frames) and frames[0].name == 'call_soon_threadsafe'


def _drop_closed_loop_errors() -> None:
  """After a failed restore or save (a full disk) tensorstore still
  completes its reads and writes into Orbax's event loop, now closed; each
  one prints 'RuntimeError: Event loop is closed' from a background thread,
  through sys.excepthook or sys.unraisablehook. Those, and only those, are
  dropped: the failure itself is reported in one line."""
  previous = sys.excepthook
  if not getattr(previous, 'dash_jax', False):
    def hook(kind, value, tb):
      if not _closed_loop_error(kind, value, tb):
        previous(kind, value, tb)
    hook.dash_jax = True
    sys.excepthook = hook
  previous_unraisable = sys.unraisablehook
  if not getattr(previous_unraisable, 'dash_jax', False):
    def unraisable(u):
      if not _closed_loop_error(u.exc_type, u.exc_value, u.exc_traceback):
        previous_unraisable(u)
    unraisable.dash_jax = True
    sys.unraisablehook = unraisable


class SaveFailed(UserError):
  """A checkpoint save failed; says whether an earlier checkpoint exists."""

  def __init__(self, directory, why, last):
    self.directory, self.why, self.last = directory, why, last
    resume = (f'resume from the last saved one ({last})' if last else
              'start the run over (no checkpoint of it was saved)')
    super().__init__(f'saving a checkpoint in {directory} failed ({why}); fix that and '
                     f're-run the same command to {resume}')


class RunCheckpoints:
  """CheckpointManager for one run folder; steps number save positions."""

  def __init__(self, directory: str, keep: int = 3, min_interval_s: float = 0.0):
    """Saves closer than `min_interval_s` to the previous one are skipped:
    with a small model a save costs more than the epochs it protects."""
    self.directory = os.path.abspath(directory)
    self.min_interval_s = min_interval_s
    self._last_save = -math.inf
    _quiet_orbax_logs()
    _drop_closed_loop_errors()  # a save that fails (a full disk) leaves some behind too
    self.manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(
            max_to_keep=keep, create=True, cleanup_tmp_directories=True,
            enable_async_checkpointing=True))

  def save(self, step: int, state, key, meta: dict, force: bool = False) -> bool:
    """Saves unless the previous save is under min_interval_s old (or force)."""
    now = time.monotonic()
    if not force and now - self._last_save < self.min_interval_s:
      with self._failing_saves():  # an earlier background save that failed: now, not at the end
        self.manager.check_for_errors()
      return False
    self._last_save = now
    # Host copies first: the jitted steps donate the device buffers. The
    # metadata as JSON now: Orbax serialises it in the background, while the
    # loop appends the next records to the lists it holds.
    tree = jax.device_get(_state_tree(state, key))
    meta = json.loads(json.dumps(meta))
    with self._failing_saves():
      self.manager.save(step, args=ocp.args.Composite(
          state=ocp.args.StandardSave(tree), meta=ocp.args.JsonSave(meta)))
    return True

  @contextlib.contextmanager
  def _failing_saves(self):
    """A failed save (a full disk, say; Orbax saves in the background, so it
    surfaces at the next save or wait) is one line, and leaves no half-written
    *-tmp folder behind."""
    try:
      yield
    except Exception as e:  # noqa: BLE001 - whatever Orbax or tensorstore raise
      for name in os.listdir(self.directory) if os.path.isdir(self.directory) else ():
        if name.endswith('-tmp') or '.orbax-checkpoint-tmp' in name:
          shutil.rmtree(os.path.join(self.directory, name), ignore_errors=True)
      text = str(e)
      why = next((m for m in ('No space left on device', 'Disk quota exceeded',
                              'Read-only file system', 'Permission denied') if m in text),
                 f'{type(e).__name__}: {text.splitlines()[0][:160] if text else ""}')
      raise SaveFailed(self.directory, why, self._last_saved()) from None

  def _last_saved(self):
    """Path of the newest committed checkpoint, or None."""
    try:
      steps = [int(n) for n in os.listdir(self.directory) if n.isdigit()]
    except OSError:
      return None
    return os.path.join(self.directory, str(max(steps))) if steps else None

  def restore_latest(self, template_state, template_key,
                     log: Callable[[str], None] = print
                     ) -> Optional[tuple[Any, Any, dict]]:
    """(state, key, meta) from the newest readable step, or None."""
    target = jax.tree.map(np.asarray, _state_tree(template_state, template_key))
    _drop_closed_loop_errors()
    for step in sorted(self.manager.all_steps(), reverse=True):
      try:
        with quiet_orbax():  # a damaged step is reported below, in one line
          restored = self.manager.restore(step, args=ocp.args.Composite(
              state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()))
        tree, meta = restored['state'], dict(restored['meta'])
        if jax.tree.structure(tree) != jax.tree.structure(target):
          raise ValueError('saved tree does not match this config\'s model')
      except Exception as e:  # noqa: BLE001 - any unreadable step: fall back
        path = os.path.join(self.directory, str(step))
        aside = free_name(f'{path}.corrupt')
        log(f'  checkpoint {path} is unreadable ({type(e).__name__}); moved to '
            f'{aside}, trying an older one')
        try:
          os.replace(path, aside)  # kept for inspection, out of the way
        except OSError as move:
          raise UserError(f'checkpoint {path} is unreadable and cannot be moved aside '
                          f'({move.strerror}); delete it and relaunch') from None
        self.manager.reload()
        continue
      state = template_state.replace(
          params=tree['params'], batch_stats=tree['batch_stats'],
          opt_state=tree['opt_state'], step=tree['step'],
          init_params=tree.get('init_params', template_state.init_params))
      return jax.device_put(state), jax.device_put(tree['key']), meta
    return None

  def wait(self) -> None:
    with self._failing_saves():
      self.manager.wait_until_finished()

  def close(self) -> None:
    with self._failing_saves():
      try:
        self.manager.wait_until_finished()
      finally:
        self.manager.close()
