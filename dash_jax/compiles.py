"""Counts XLA compilations, so a run can show that growing the training set
from experiment to experiment compiles nothing new.

Every backend compile in the process reports to jax.monitoring; a counter
reads the running totals before and after a stretch of work.
"""
from __future__ import annotations

import dataclasses
import os
import threading

import jax
from jax import monitoring

from dash_jax.errors import UserError

_EVENT = '/jax/core/compile/backend_compile_duration'
_lock = threading.Lock()
_totals = {'count': 0, 'seconds': 0.0}
_registered = False


def _listener(event: str, duration: float, **kwargs) -> None:
  del kwargs
  if event == _EVENT:
    with _lock:
      _totals['count'] += 1
      _totals['seconds'] += duration


def _ensure_listening() -> None:
  global _registered
  with _lock:
    if not _registered:
      monitoring.register_event_duration_secs_listener(_listener)
      _registered = True


@dataclasses.dataclass
class Compiles:
  count: int = 0
  seconds: float = 0.0


class CompileCounter:
  """`since_last()` gives the compiles since the previous call (or creation)."""

  def __init__(self):
    _ensure_listening()
    self._mark = self._now()

  @staticmethod
  def _now() -> Compiles:
    with _lock:
      return Compiles(_totals['count'], _totals['seconds'])

  def since_last(self) -> Compiles:
    now = self._now()
    delta = Compiles(now.count - self._mark.count, now.seconds - self._mark.seconds)
    self._mark = now
    return delta


def use_disk_cache(directory: str, max_gb: float) -> None:
  """Keep every compiled program in `directory` ('' = off), so the next
  process that needs it loads it instead of compiling (a load is not counted
  as a compile). JAX evicts the least recently used beyond `max_gb`."""
  if not directory:
    return
  directory = os.path.expanduser(directory)
  try:
    os.makedirs(directory, exist_ok=True)
  except OSError as e:
    raise UserError(f'cannot create compile_cache_dir {directory} ({e.strerror}); '
                    f"pass a writable --config.compile_cache_dir, or '' to turn "
                    f'the cache off') from None
  jax.config.update('jax_compilation_cache_dir', directory)
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)
  jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)
  jax.config.update('jax_compilation_cache_max_size', int(max_gb * 2**30))
