"""Ctrl-C and SIGTERM during a launch: one line ("stopped (Ctrl-C); re-run
...", not an error) and exit 130 / 143, never a crash or a traceback.

A KeyboardInterrupt raised in the middle of an XLA compile, or an
interpreter shutting down under live Orbax and XLA threads, can end in a
segmentation fault; so a signal is never turned into an exception. The C
level handler wakes a watcher thread (signal.set_wakeup_fd) even while the
main thread sits in a long compile, and the watcher ends the process with
os._exit: no shutdown, nothing half-torn. That is safe at any moment:
results and configs are replaced atomically, Orbax commits a checkpoint by
renaming a finished folder (and drops unfinished ones on the next start),
and the run locks go with the process.

SIGTERM (a scheduler's notice) inside the experiment loop instead asks the
loop to save a checkpoint at its next checkpoint point or experiment
boundary and then stop (Terminated), so the relaunch loses little work. A
second SIGTERM within REPEAT_WINDOW_S of the first is the same request
(coreutils `timeout`, SLURM and Kubernetes signal the process and then its
process group) and is ignored; SIGINT, a SIGTERM outside the loop, a later
SIGTERM or a third one exits at once. The first SIGTERM is passed on to the
launch's worker processes (`forward_to`), so theirs arrives in the same window.
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time

# A stop that was asked for is no error: its line says so, and its exit code
# (128 + the signal, as a shell reports a process a signal ended) that it stopped.
INTERRUPTED = ('stopped (Ctrl-C); re-run the same command to resume', 130)
TERMINATED = ('stopped (SIGTERM); re-run the same command to resume', 143)
SAVED = ('stopped (SIGTERM) after saving a checkpoint; re-run the same command to resume',
         143)

_stop = threading.Event()
_lock = threading.Lock()
_loops = 0  # experiment loops running that can save before stopping
_watcher = None
_wake_fd = -1
_quiet = False  # a launch's worker process: its parent prints the one line
REPEAT_WINDOW_S = 2.0  # a SIGTERM this soon after the first is the same request
_first_term = None  # time.monotonic() of the first SIGTERM
_repeats = 0  # SIGTERMs taken as repeats of the first
_children: list = []  # worker pids the first SIGTERM is passed on to


class Terminated(Exception):
  """Raised by the loop at a safe point once SIGTERM asked it to stop."""


def stop_requested() -> bool:
  return _stop.is_set()


def check() -> None:
  """At a point where the loop's state is saved: stop if asked to."""
  if _stop.is_set():
    raise Terminated(SAVED[0])


@contextlib.contextmanager
def saving_loop():
  """Inside: SIGTERM waits for the loop's next checkpoint instead of exiting."""
  global _loops
  with _lock:
    _loops += 1
  try:
    yield
  finally:
    with _lock:
      _loops -= 1


def exit_now(message: str, code: int) -> None:
  """Print `message` (one line) on stderr and end the process at once."""
  try:
    sys.stdout.flush()
  except Exception:  # noqa: BLE001 - a closed or broken stdout: nothing to keep
    pass
  if not _quiet:
    lead = '\n' if sys.stderr.isatty() else ''  # off a progress bar's line
    os.write(2, f'{lead}{message}\n'.encode())
  os._exit(code)


def forward_to(pids) -> None:
  """Pass the first SIGTERM on to these processes (a launch's workers)."""
  _children[:] = list(pids)


def _on_signal(signum: int) -> None:
  global _first_term, _repeats
  if signum == signal.SIGTERM:
    now = time.monotonic()
    with _lock:
      if (_first_term is not None and _repeats == 0
          and now - _first_term <= REPEAT_WINDOW_S):
        _repeats += 1  # the process group's copy of the same request
        return
      first = _first_term is None
      if first:
        _first_term = now
      defer = first and _loops > 0
      _stop.set()
    if first:
      for pid in _children:
        try:
          os.kill(pid, signal.SIGTERM)
        except OSError:  # already gone
          pass
    if not defer:
      exit_now(*TERMINATED)
    return
  exit_now(*INTERRUPTED)


def _watch(fd: int) -> None:
  while True:
    try:
      data = os.read(fd, 64)
    except InterruptedError:
      continue
    except OSError:
      return
    for signum in data:
      if signum in (signal.SIGINT, signal.SIGTERM):
        _on_signal(signum)


def _python_handler(signum, frame):
  """Runs later, in the main thread: acts only if the watcher was not woken
  (something else took over the wake-up fd)."""
  del frame
  previous = signal.set_wakeup_fd(_wake_fd, warn_on_full_buffer=False)
  if previous != _wake_fd or not _watcher.is_alive():
    _on_signal(signum)


def install(quiet: bool = False) -> None:
  """Handle SIGINT and SIGTERM as above (main thread, once per process);
  `quiet`: exit with the same codes but print nothing."""
  global _watcher, _wake_fd, _quiet
  _quiet = quiet
  if _watcher is not None:
    return
  read_fd, _wake_fd = os.pipe()
  os.set_blocking(_wake_fd, False)
  signal.set_wakeup_fd(_wake_fd, warn_on_full_buffer=False)
  _watcher = threading.Thread(target=_watch, args=(read_fd,), daemon=True,
                              name='dash_jax-signals')
  _watcher.start()
  for signum in (signal.SIGINT, signal.SIGTERM):
    if signal.getsignal(signum) != signal.SIG_IGN:  # nohup, `cmd &` in a script: ignored
      signal.signal(signum, _python_handler)
