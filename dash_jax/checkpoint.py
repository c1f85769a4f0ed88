"""Orbax checkpoints of one run: the train state plus where the run stands.

Saved after every experiment and every few epochs inside one, so a killed
run resumes and finishes with exactly the numbers of an uninterrupted one.
Writes are atomic (Orbax commits a step by renaming a finished temporary
folder); a step that fails to restore is reported and an older one is used.
"""
from __future__ import annotations

import math
import os
import time
from typing import Any, Callable, Optional

import jax
import numpy as np
import orbax.checkpoint as ocp


def _state_tree(state, key) -> dict:
  """The arrays worth saving (apply_fn and tx are code, not data)."""
  tree = {'params': state.params, 'batch_stats': state.batch_stats,
          'opt_state': state.opt_state, 'step': state.step, 'key': key}
  if state.init_params is not None:
    tree['init_params'] = state.init_params
  return tree


class RunCheckpoints:
  """CheckpointManager for one run folder; steps number save positions."""

  def __init__(self, directory: str, keep: int = 3, min_interval_s: float = 0.0):
    """Saves closer than `min_interval_s` to the previous one are skipped:
    with a small model a save costs more than the epochs it protects."""
    self.directory = os.path.abspath(directory)
    self.min_interval_s = min_interval_s
    self._last_save = -math.inf
    self.manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(
            max_to_keep=keep, create=True, cleanup_tmp_directories=True,
            enable_async_checkpointing=True))

  def save(self, step: int, state, key, meta: dict, force: bool = False) -> bool:
    """Saves unless the previous save is under min_interval_s old (or force)."""
    now = time.monotonic()
    if not force and now - self._last_save < self.min_interval_s:
      return False
    self._last_save = now
    # Host copies first: the jitted steps donate the device buffers.
    tree = jax.device_get(_state_tree(state, key))
    self.manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(tree), meta=ocp.args.JsonSave(meta)))
    return True

  def restore_latest(self, template_state, template_key,
                     log: Callable[[str], None] = print
                     ) -> Optional[tuple[Any, Any, dict]]:
    """(state, key, meta) from the newest readable step, or None."""
    target = jax.tree.map(np.asarray, _state_tree(template_state, template_key))
    for step in sorted(self.manager.all_steps(), reverse=True):
      try:
        restored = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()))
        tree, meta = restored['state'], dict(restored['meta'])
        if jax.tree.structure(tree) != jax.tree.structure(target):
          raise ValueError('saved tree does not match this config\'s model')
      except Exception as e:  # noqa: BLE001 - any unreadable step: fall back
        path = os.path.join(self.directory, str(step))
        log(f'  checkpoint {path} is unreadable ({type(e).__name__}); moved to '
            f'{path}.corrupt, trying an older one')
        os.replace(path, f'{path}.corrupt')  # kept for inspection, out of the way
        self.manager.reload()
        continue
      state = template_state.replace(
          params=tree['params'], batch_stats=tree['batch_stats'],
          opt_state=tree['opt_state'], step=tree['step'],
          init_params=tree.get('init_params', template_state.init_params))
      return jax.device_put(state), jax.device_put(tree['key']), meta
    return None

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()
