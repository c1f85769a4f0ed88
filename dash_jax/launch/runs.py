"""A launch: expand the grid into runs, guard the workdir, train the runs
(finished ones are read back, unfinished ones resume), then the tables.

Experiments are looked up by `config.experiment`: 'incremental' (the paper's
warm-start protocol, dash_jax/protocol.py) or 'synthetic' (its Section 4
model, dash_jax/synthetic.py).
"""
from __future__ import annotations

import dataclasses
import os
import pickle
import signal
import socket
import sys
import threading
import time
from typing import Callable

from dash_jax import compiles, parallel, protocol, results, setup, signals
from dash_jax import data as data_lib
from dash_jax.errors import UserError
from dash_jax.launch import config as config_lib
from dash_jax.launch import grid, locks, report, saved, tables
from dash_jax.launch import hosts as hosts_lib
from dash_jax.launch import workdir as workdir_lib
from dash_jax.launch import workers as workers_lib


def run_incremental(config, workdir: str, log=print) -> dict:
  """Every run of the launch, then the summary table over seeds and the report."""
  config_lib.validate(config)
  sha = data_lib.fingerprint(config.dataset)  # a file dataset's sha256, for the guard
  runs = grid.plan(config, workdir, sha)
  hosts = hosts_lib.initialize(config)
  parallel.check_platform()  # JAX_PLATFORMS this machine lacks: one line, before the data
  compiles.use_disk_cache(config.compile_cache_dir, config.compile_cache_gb)
  if hosts.is_main:  # refuse another config before the data loads (a read: no lock) ...
    workdir_lib.check_workdir(config, runs, log, dry_run=True)
  ds = load_checked(runs[0].settings.data)
  for model in {r.settings.model.model for r in runs}:  # a convnet on features
    setup.check_input_shape(model, ds)
  check_batches(ds, runs, log if hosts.is_main else lambda line: None)
  if hosts.is_main:  # ... and claim the workdir once it has loaded
    workdir_lib.claim_workdir(config, workdir, runs, log)
  hosts.barrier('workdir checked')
  locks.join_launch(locks.me(), 'main process')
  all_results = _train_with_workers(config, ds, hosts.share(runs), (workdir, sha), log)
  hosts.barrier('runs finished')
  if not hosts.is_main:  # the main process writes the launch's tables
    return all_results
  all_results = {r.name: all_results.get(r.name) or  # other processes' runs from disk
                 saved.read_run(os.path.join(r.folder, results.RESULTS)) for r in runs}
  with workdir_lib.launch_lock(workdir):  # one launch at a time writes the tables
    table = tables.write(workdir, list(all_results.values()))
    rep = report.write([workdir], workdir)  # every run in the workdir, not only this launch's
  log(table)
  log('report: ' + ', '.join(rep.paths.values()))
  return all_results


def load_checked(data_settings) -> data_lib.Dataset:
  """The launch's dataset; a file dataset must hold the contents hashed
  when the launch started (data.check_unchanged)."""
  ds = data_lib.load(data_settings)
  data_lib.check_unchanged(data_settings, ds)
  return ds


def _train_with_workers(config, ds, runs, where, log) -> dict:
  """This process's runs, shared with config.runs_per_device - 1 workers
  (no more processes than runs: a worker of a one-run launch would only
  start and stop). `where` = (workdir, the dataset's hash)."""
  workdir, sha = where
  workers = workers_lib.start(config, workdir, sha, min(config.runs_per_device, len(runs)) - 1)
  if workers:
    log(f'started {workers_lib.count_text(len(workers), "worker process")} '
        f'(pid {", ".join(str(w.pid) for w in workers)}) to share the runs '
        f'(config.runs_per_device={config.runs_per_device}); their lines start [worker N]')
  try:
    with parallel.use_mesh(parallel.make_mesh(config.devices)):
      out = _run_all(ds, runs, config.vmap_seeds, log,
                     check=lambda: workers_lib.check(workers))
  except BaseException:
    workers_lib.stop(workers, early=True)
    raise
  workers_lib.stop(workers, log=log)
  return out


BATCH_FIELDS = ('num_chunks', 'batch_size', 'model', 'depth', 'last_batch')  # depth: BatchNorm or not


def check_batches(ds, runs, log=print) -> None:
  """Before training: refuse too many chunks or BatchNorm over batches of
  one; say how many training examples the chunking leaves out and which
  experiments end their epochs in a small batch (setup.batch_notes), once
  per setting (prefixed by it where the launch sweeps one)."""
  by_setting = {}
  for run in runs:
    by_setting.setdefault(tuple(run.recorded[f] for f in BATCH_FIELDS), run.settings)
  varied = [i for i, _ in enumerate(BATCH_FIELDS) if len({k[i] for k in by_setting}) > 1]
  said = set()
  for key, s in by_setting.items():
    num_chunks = s.chunks.num_chunks
    _, chunk_size = setup.chunk_buffer(len(ds.train_y), num_chunks, 0)
    setup.check_batch_of_one(s, ds, chunk_size)
    kept = setup.chunking(len(ds.train_y), num_chunks, chunk_size)
    lines = [] if not kept['left_out'] else [(('num_chunks',), (
        f'{num_chunks} chunks of {chunk_size:,} examples (N // num_chunks, as the '
        f'original) train on {num_chunks * chunk_size:,} of the {len(ds.train_y):,} '
        f"training examples: {kept['left_out']:,} left out"))]
    lines += [(BATCH_FIELDS, note) for note in setup.batch_notes(s, ds, chunk_size)]
    for fields, line in lines:
      prefix = ', '.join(f'{BATCH_FIELDS[i]}={key[i]}' for i in varied if BATCH_FIELDS[i] in fields)
      line = f'[{prefix}] {line}' if prefix else line
      if line not in said:
        said.add(line)
        log(line)


def worker_main(workdir, index, parent_pid, error_fd='-1') -> None:
  """A worker of a launch (its config and dataset hash pickled on stdin):
  train the claimable runs quietly (the parent prints the tables); stop,
  saving, if the parent goes away. A UserError goes to the parent through
  `error_fd`, which stops the launch with it."""
  signals.install(quiet=True)

  def watch_parent():
    while os.getppid() == int(parent_pid):
      time.sleep(1.0)
    os.kill(os.getpid(), signal.SIGTERM)
  threading.Thread(target=watch_parent, daemon=True).start()
  config, sha = pickle.load(sys.stdin.buffer)
  locks.join_launch(f'pid {parent_pid} on {socket.gethostname()}', f'worker {index}')
  try:
    compiles.use_disk_cache(config.compile_cache_dir, config.compile_cache_gb)
    runs = [_without_bars(r) for r in grid.plan(config, workdir, sha)]
    ds = load_checked(runs[0].settings.data)  # the file the launch hashed, or stop
    with parallel.use_mesh(parallel.make_mesh(config.devices)):
      _run_all(ds, runs, config.vmap_seeds,
               lambda line: print(f'[worker {index}] {line}', flush=True))
  except signals.Terminated:
    sys.exit(signals.SAVED[1])
  except UserError as e:
    if int(error_fd) >= 0:
      os.write(int(error_fd), str(e).encode(errors='backslashreplace'))
    else:
      print(f'[worker {index}] error: {e}', file=sys.stderr, flush=True)
    sys.exit(2)


def _without_bars(run):
  """A worker's run: no progress bars (the parent's terminal is shared)."""
  outputs = dataclasses.replace(run.settings.outputs, progress=False)
  return dataclasses.replace(run, settings=dataclasses.replace(run.settings, outputs=outputs))


def _label(group) -> str:
  return group[0].name if len(group) == 1 else (
      f'{group[0].stem}, seeds {[r.seed for r in group]} as one program')


def _run_all(ds, runs, vmap_seeds, log, check=None) -> dict:
  """Train the runs nobody else holds, each under its run lock; then wait
  for the ones other processes hold (a crashed holder's runs are trained
  here once the OS drops its locks). `check()` runs before each group (the
  parent's look at its workers)."""
  all_results, todo = {}, []
  for run in runs:
    done = workdir_lib.finished(run)
    if done is not None:
      log(f'{run.name} finished earlier; reading {os.path.join(run.folder, results.RESULTS)}')
      all_results[run.name] = done
    else:
      todo.append(run)
  groups = grid.groups(todo, vmap_seeds)

  def train_held(i, claim, by='another process'):
    try:
      if check is not None:
        check()
      all_results.update(_train_claimed(ds, groups[i - 1], log, f'run {i}/{len(groups)}', by))
    finally:
      claim.release()

  held = []
  for i, group in enumerate(groups, 1):
    claim = workdir_lib.claim(group)
    ours = claim.launch_roles()  # its holder, or last holder, is of this launch
    if claim.acquire(blocking=False):
      train_held(i, claim, ours or 'another process')
    else:
      ours = claim.launch_roles()  # read again: the holder has written itself by now
      log(f'{_label(group)}: {ours} of this launch has it; taking the next' if ours else
          f'{_label(group)}: another process holds it ({claim.holders()}); taking the next')
      held.append((i, ours))
  for i, ours in held:
    claim = workdir_lib.claim(groups[i - 1])
    if not ours:
      log(f'waiting for {_label(groups[i - 1])} ({claim.holders()})')
    claim.acquire(blocking=True)
    train_held(i, claim, ours or 'another process')
  return {run.name: all_results[run.name] for run in runs}


def _train_claimed(ds, group, log, heading, by) -> dict:
  """A claimed group: runs another process (`by`) finished meanwhile are
  read back (quietly where `by` is this launch's own), the rest trained
  (resuming from their checkpoints)."""
  signals.check()  # SIGTERM during the previous group: stop before this one
  out, rest = {}, []
  for run in group:
    done = workdir_lib.finished(run)
    if done is not None:
      if by == 'another process':
        log(f'{run.name} finished by another process; reading its results')
      out[run.name] = done
    else:
      rest.append(run)
  if not rest:
    return out
  workdir_lib.check_claimed(rest)  # a launch with allow_config_change may have replaced it
  with signals.saving_loop():  # from here on SIGTERM stops at a saved point
    log(f'{heading}: {_label(rest)}')
    for run, res in zip(rest, protocol.run_protocol(ds, rest, log)):
      out[run.name] = res
  return out


def _run_synthetic(config, workdir: str, log=print) -> dict:
  from dash_jax.launch import synthetic
  return synthetic.run(config, workdir, log)


EXPERIMENTS: dict[str, Callable[..., dict]] = {
    'incremental': run_incremental,
    'synthetic': _run_synthetic,
}


def run(config, workdir: str, log=print) -> dict:
  """Run a launch of `config.experiment` into `workdir`."""
  name = config.experiment
  if name not in EXPERIMENTS:
    raise UserError(f'unknown experiment {name!r}; valid: {", ".join(sorted(EXPERIMENTS))}')
  return EXPERIMENTS[name](config, workdir_lib.usable_workdir(workdir), log)
