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
    os.write(fd, f'pid {os.getpid()} on {socket.gethostname()}'.encode())
    self._fd = fd
    return True

  def release(self) -> None:
    if self._fd is not None:
      os.close(self._fd)  # closing the file drops the lock
      self._fd = None

  def holder(self) -> str:
    """'pid N on HOST' of the holder, as it wrote it ('' if unknown)."""
    try:
      with open(self.path) as f:
        return f.read(200).strip()
    except OSError:
      return ''

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
