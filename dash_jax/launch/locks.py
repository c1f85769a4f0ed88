"""Claims between processes that share a workdir: an OS-level lock on a file
(fcntl.flock), held while the claim's work runs. The OS releases it when
its holder exits or crashes, so a relaunch picks up a dead process's runs;
on a shared file system (NFS emulates flock with its own locks) processes on
several machines share one launch's runs the same way.
"""
from __future__ import annotations

import fcntl
import os
import socket

LAUNCH_LOCK = '.launch.lock'  # in the workdir: the config guard and the tables
RUN_LOCK = '.lock'  # in a run folder: the run's training

# This process's launch, written under the holder in every lock it takes:
# ('pid N on HOST' of the launch's main process, this process's role in it,
# 'main process' or 'worker K'), so the processes of one launch
# (config.runs_per_device) know each other's locks from a stranger's.
_launch = ('', '')


def me() -> str:
  return f'pid {os.getpid()} on {socket.gethostname()}'


def join_launch(main: str, role: str) -> None:
  """Mark the locks this process takes as `role` of the launch whose main
  process is `main` ('pid N on HOST')."""
  global _launch
  _launch = (main, role)


class Lock:
  """An exclusive lock on `path` (created if absent; it is never deleted, so
  every process locks the same file)."""

  def __init__(self, path: str):
    self.path = path
    self._fd = None

  def acquire(self, blocking: bool = True) -> bool:
    """True once held; False (blocking=False) when another process holds it."""
    os.makedirs(os.path.dirname(self.path) or '.', exist_ok=True)
    fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except BlockingIOError:
      os.close(fd)
      return False
    except BaseException:
      os.close(fd)
      raise
    os.ftruncate(fd, 0)  # who holds it, for messages
    main, role = _launch
    os.write(fd, (me() + (f'\nlaunch {main}; {role}' if main else '')).encode())
    self._fd = fd
    return True

  def release(self) -> None:
    if self._fd is not None:
      os.close(self._fd)  # closing the file drops the lock
      self._fd = None

  def holder(self) -> str:
    """'pid N on HOST' of the holder, as it wrote it ('' if unknown)."""
    return self._written()[0]

  def launch_role(self) -> str:
    """The holder's role ('worker 1', 'main process') if it belongs to this
    process's launch, else ''."""
    lines = self._written()
    main, role = _launch
    if not main or len(lines) < 2 or lines[0] == me():
      return ''
    theirs, _, their_role = lines[1].removeprefix('launch ').partition('; ')
    return their_role if theirs == main else ''

  def _written(self) -> list:
    try:
      with open(self.path) as f:
        return f.read(400).strip().splitlines() or ['']
    except OSError:
      return ['']

  def __enter__(self):
    self.acquire()
    return self

  def __exit__(self, *exc):
    self.release()


class Claim:
  """Several locks taken together (a group's runs), in path order so that
  processes waiting for overlapping claims cannot deadlock."""

  def __init__(self, paths):
    self.locks = [Lock(p) for p in sorted(paths)]

  def acquire(self, blocking: bool = True) -> bool:
    for i, lock in enumerate(self.locks):
      if not lock.acquire(blocking):
        for held in self.locks[:i]:
          held.release()
        return False
    return True

  def release(self) -> None:
    for lock in self.locks:
      lock.release()

  def holders(self) -> str:
    return ', '.join(sorted({h for h in (lock.holder() for lock in self.locks) if h}))

  def launch_roles(self) -> str:
    """The roles in this process's launch of the claim's holders ('worker 1'),
    or '' if any holder is not of this launch (another launch, unknown)."""
    roles = [lock.launch_role() for lock in self.locks]
    return ', '.join(sorted(set(roles))) if all(roles) else ''
