"""config.runs_per_device: worker processes that share a launch's runs on
this machine's devices; started, watched between runs and stopped here.
Their own loop is runs.worker_main."""
from __future__ import annotations

import contextlib
import os
import pickle
import subprocess
import sys

from dash_jax import signals
from dash_jax.errors import UserError


def count_text(n, noun) -> str:
  return f'{n} {noun}' + ('' if n == 1 else 'es' if noun.endswith('s') else 's')


def start(config, workdir, dataset_sha256, count) -> list:
  """config.runs_per_device: `count` more processes of this launch share its
  runs on this machine's devices (each claims the runs nobody holds, as
  several launches into one workdir do); they write no tables. Each is a
  fresh interpreter (its own JAX), handed the config and the dataset's
  hash as a pickle on its stdin (no file: nothing of the launch's machinery outlives it) and a pipe
  for its one-line error."""
  if count <= 0:
    return []
  package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(
      p for p in (package_root, os.environ.get('PYTHONPATH', '')) if p))
  code = 'import sys; from dash_jax.launch import runs; runs.worker_main(*sys.argv[1:])'
  workers, blob = [], pickle.dumps((config, dataset_sha256))
  for i in range(1, count + 1):
    read_fd, write_fd = os.pipe()
    try:
      w = subprocess.Popen([sys.executable, '-c', code, workdir, str(i), str(os.getpid()),
                            str(write_fd)], env=env, stdin=subprocess.PIPE,
                           pass_fds=(write_fd,))
    finally:
      os.close(write_fd)
    w.error_fd, w.error = read_fd, None
    with contextlib.suppress(BrokenPipeError):  # a worker that died at once: its exit says
      w.stdin.write(blob)
    with contextlib.suppress(BrokenPipeError):
      w.stdin.close()
    workers.append(w)
  signals.forward_to(w.pid for w in workers)  # a SIGTERM here reaches them at once
  return workers


def _error(w) -> str | None:
  """The one-line error an exited worker sent (its UserError), else None."""
  if w.error is None and w.error_fd is not None:
    chunks = []
    while chunk := os.read(w.error_fd, 1 << 16):  # the worker has exited: EOF follows
      chunks.append(chunk)
    os.close(w.error_fd)
    w.error_fd, w.error = None, b''.join(chunks).decode(errors='replace').strip()
  return w.error or None


def check(workers) -> None:
  """Between runs: a worker that stopped on a UserError (the data file
  changed, a full disk, ...) stops the launch with its line."""
  for w in workers:
    if w.poll() == 2 and _error(w):
      raise UserError(_error(w))


def _how(code) -> str:
  return f'killed by signal {-code}' if code < 0 else f'exit {code}'


def stop(workers, early=False, log=print) -> None:
  """Wait for the workers (their runs are done when this process's are: it
  waits on the runs they hold); if this process stops early, ask them to
  save and stop (SIGTERM), as its own loop does. A worker that died is
  reported; its runs were finished here, so the launch goes on to its tables,
  unless it stopped on a UserError: that is raised."""
  signals.forward_to(())
  errors = []
  for i, w in enumerate(workers, 1):
    if early and w.poll() is None and not signals.stop_requested():  # else: already told
      w.terminate()
    code = w.wait()
    error = _error(w)
    if early or code == 0:
      continue
    if code == 2 and error:
      errors.append(error)
    else:
      log(f'note: worker process {i} ended early ({_how(code)}); this process finished '
          f'its runs')
  if errors:
    raise UserError(errors[0])


