"""A launch: expand the grid into runs, guard the workdir, train the runs
(finished ones are read back, unfinished ones resume), then the tables.

Experiments are looked up by `config.experiment`: 'incremental' (the paper's
warm-start protocol, dash_jax/protocol.py) or 'synthetic' (its Section 4
model, dash_jax/synthetic.py).
"""
from __future__ import annotations

import contextlib
import dataclasses
import itertools
import os
import pickle
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import Callable, Iterator

from dash_jax import compiles, models, parallel, protocol, results, setup, signals
from dash_jax.launch import locks, report, tables
from dash_jax.launch import config as config_lib
from dash_jax import data as data_lib
from dash_jax.errors import UserError


@dataclasses.dataclass(frozen=True)
class RunSpec:
  """One run of the protocol: the single values it was launched with
  (`sweep`: (field, value) of each swept field, in name order)."""
  train_type: str
  optimizer: str
  seed: int
  sweep: tuple = ()

  @property
  def stem(self) -> str:
    """The name without the seed: what the seeds of a row share."""
    return '-'.join([self.train_type, self.optimizer] +
                    [_swept_text(f, v) for f, v in self.sweep])

  @property
  def name(self) -> str:
    return f'{self.stem}-seed{self.seed}'


def _swept_text(field, value) -> str:
  text = value_text(value)
  sep = '' if text[:1].isdigit() or text[:1] in '.+-' else '_'
  return f'{config_lib.SHORT_NAMES.get(field, field)}{sep}{text}'


def value_text(value) -> str:
  """A swept value as it appears in a folder name (floats round-trip)."""
  text = repr(value) if isinstance(value, float) else str(value)
  return ''.join(c if c.isalnum() or c in '.+-_' else '_' for c in text)


def run_specs(config) -> Iterator[RunSpec]:
  """Every combination of the listed training types, optimizers, swept
  values and seeds (seeds vary fastest)."""
  swept = config_lib.sweeps(config)
  seen = {}
  for tt, opt, values, seed in itertools.product(
      config_lib.parse_list(config.train_type, str, 'train_type'),
      config_lib.parse_list(config.optimizer, str, 'optimizer'),
      itertools.product(*swept.values()),
      config_lib.parse_list(config.seeds, int, 'seeds')):
    spec = RunSpec(tt, opt, seed, tuple(zip(swept, values)))
    if seen.setdefault(spec.name, spec) != spec:
      raise UserError(f'runs {seen[spec.name].sweep} and {spec.sweep} would share the '
                      f'folder {spec.name}; give values that differ in letters or digits')
    yield spec


def run_config(config, spec: RunSpec):
  """The config of one run: the launch's, with its own single values (a
  swept run also lists its swept fields in config.swept)."""
  config = config_lib.single(config, dict(spec.sweep))
  with config.unlocked():
    config.train_type, config.optimizer = spec.train_type, spec.optimizer
    config.seeds = str(spec.seed)
    config.model = models.resolve_name(config)  # sota: resnet18 -> resnet18_sota
    if spec.sweep:
      config[config_lib.SWEPT] = [f for f, _ in spec.sweep]
  return config


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


def check_workdir(config, workdir, specs, log=print, dry_run=False):
  """Refuse a workdir whose runs were made with another config, unless
  config.allow_config_change: then those runs are moved aside and redone
  (not with dry_run, which only refuses). Other than a dry run, call it
  holding the launch lock."""
  for spec in specs:
    run_dir = os.path.join(workdir, spec.name)
    path = os.path.join(run_dir, results.RUN_CONFIG)
    if not os.path.exists(path):
      continue
    saved = results.read_run_config(path)
    diff = config_lib.differing_fields(saved, run_config(config, spec).to_dict())
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
      backup = _free_name(run_dir + '.replaced')
      os.replace(run_dir, backup)
    finally:
      lock.release()
    log(f'{spec.name}: config changed ({"; ".join(diff)}); old run kept in {backup}')


def _free_name(prefix):
  i = 1
  while os.path.exists(f'{prefix}-{i}'):
    i += 1
  return f'{prefix}-{i}'


def _launch_lock(workdir) -> locks.Lock:
  """Held while a launch checks and writes the runs' configs, and while it
  writes the tables: launches into one workdir take turns there."""
  return locks.Lock(os.path.join(workdir, locks.LAUNCH_LOCK))


def claim_workdir(config, workdir, specs, log=print) -> None:
  """The config guard and the runs' config.json, as one step under the
  launch lock: a launch with another config sees this one's configs."""
  with _launch_lock(workdir):
    check_workdir(config, workdir, specs, log)
    for name in os.listdir(workdir):  # configs earlier versions handed workers in files
      if name.startswith('.workers-') and name.endswith('.pkl'):
        with contextlib.suppress(OSError):
          os.remove(os.path.join(workdir, name))
    for spec in specs:
      path = os.path.join(workdir, spec.name, results.RUN_CONFIG)
      if not os.path.exists(path):
        results.write_json(path, run_config(config, spec).to_dict())


def run_incremental(config, workdir: str, log=print) -> dict:
  """Every run of the launch, then the summary table over seeds and the report."""
  config_lib.validate(config)
  config = data_lib.fingerprinted(config)  # a file dataset's sha256, for the guard
  specs = list(run_specs(config))
  hosts = parallel.initialize_hosts(config)
  parallel.check_platform()  # JAX_PLATFORMS this machine lacks: one line, before the data
  compiles.use_disk_cache(config.compile_cache_dir, config.compile_cache_gb)
  if hosts.is_main:  # refuse another config before the data loads (a read: no lock) ...
    check_workdir(config, workdir, specs, log, dry_run=True)
  ds = data_lib.load(config)
  data_lib.check_unchanged(config, ds)  # the file hashed above is the one loaded
  for model in {run_config(config, s).model for s in specs}:  # a convnet on features
    setup.check_input_shape(model, ds)
  check_batches(config, ds, specs, log if hosts.is_main else lambda line: None)
  if hosts.is_main:  # ... and claim the workdir once it has loaded
    claim_workdir(config, workdir, specs, log)
  hosts.barrier('workdir checked')
  locks.join_launch(locks.me(), 'main process')
  # No more processes than runs: a worker of a one-run launch would only start and stop.
  workers = _start_workers(config, workdir, min(config.runs_per_device, len(specs)) - 1)
  if workers:
    log(f'started {_count(len(workers), "worker process")} '
        f'(pid {", ".join(str(w.pid) for w in workers)}) to share the runs '
        f'(config.runs_per_device={config.runs_per_device}); their lines start [worker N]')
  try:
    with parallel.use_mesh(parallel.make_mesh(config.devices)):
      all_results = _run_all(config, ds, hosts.share(specs), workdir, log,
                             check=lambda: _check_workers(workers))
  except BaseException:
    _stop_workers(workers, early=True)
    raise
  _stop_workers(workers, log=log)
  hosts.barrier('runs finished')
  if not hosts.is_main:  # the main process writes the launch's tables
    return all_results
  all_results = {s.name: all_results.get(s.name) or  # other processes' runs from disk
                 results.read_run(os.path.join(workdir, s.name, results.RESULTS))
                 for s in specs}
  with _launch_lock(workdir):  # one launch at a time writes the tables
    table = tables.write(workdir, list(all_results.values()))
    rep = report.write([workdir], workdir)  # every run in the workdir, not only this launch's
  log(table)
  log('report: ' + ', '.join(rep.paths.values()))
  return all_results


def _count(n, noun) -> str:
  return f'{n} {noun}' + ('' if n == 1 else 'es' if noun.endswith('s') else 's')


BATCH_FIELDS = ('num_chunks', 'batch_size', 'model', 'depth', 'last_batch')  # depth: BatchNorm or not


def check_batches(config, ds, specs, log=print) -> None:
  """Before training: refuse too many chunks or BatchNorm over batches of
  one; say how many training examples the chunking leaves out and which
  experiments end their epochs in a small batch (setup.batch_notes), once
  per setting (prefixed by it where the launch sweeps one)."""
  settings = {}
  for spec in specs:
    cfg = run_config(config, spec)
    settings.setdefault(tuple(cfg[f] for f in BATCH_FIELDS), cfg)
  varied = [i for i, _ in enumerate(BATCH_FIELDS) if len({k[i] for k in settings}) > 1]
  said = set()
  for key, cfg in settings.items():
    _, chunk_size = setup.chunk_buffer(len(ds.train_y), cfg.num_chunks, 0)
    setup.check_batch_of_one(cfg, ds, chunk_size)
    kept = setup.chunking(len(ds.train_y), cfg.num_chunks, chunk_size)
    lines = [] if not kept['left_out'] else [(('num_chunks',), (
        f'{cfg.num_chunks} chunks of {chunk_size:,} examples (N // num_chunks, as the '
        f'original) train on {cfg.num_chunks * chunk_size:,} of the {len(ds.train_y):,} '
        f"training examples: {kept['left_out']:,} left out"))]
    lines += [(BATCH_FIELDS, note) for note in setup.batch_notes(cfg, ds, chunk_size)]
    for fields, line in lines:
      prefix = ', '.join(f'{BATCH_FIELDS[i]}={key[i]}' for i in varied if BATCH_FIELDS[i] in fields)
      line = f'[{prefix}] {line}' if prefix else line
      if line not in said:
        said.add(line)
        log(line)


def _start_workers(config, workdir, count) -> list:
  """config.runs_per_device: `count` more processes of this launch share its
  runs on this machine's devices (each claims the runs nobody holds, as
  several launches into one workdir do); they write no tables. Each is a
  fresh interpreter (its own JAX), handed the config as a pickle on its
  stdin (no file: nothing of the launch's machinery outlives it) and a pipe
  for its one-line error."""
  if count <= 0:
    return []
  package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(
      p for p in (package_root, os.environ.get('PYTHONPATH', '')) if p))
  code = 'import sys; from dash_jax.launch import runs; runs.worker_main(*sys.argv[1:])'
  workers, blob = [], pickle.dumps(config)
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


def _worker_error(w) -> str | None:
  """The one-line error an exited worker sent (its UserError), else None."""
  if w.error is None and w.error_fd is not None:
    chunks = []
    while chunk := os.read(w.error_fd, 1 << 16):  # the worker has exited: EOF follows
      chunks.append(chunk)
    os.close(w.error_fd)
    w.error_fd, w.error = None, b''.join(chunks).decode(errors='replace').strip()
  return w.error or None


def _check_workers(workers) -> None:
  """Between runs: a worker that stopped on a UserError (the data file
  changed, a full disk, ...) stops the launch with its line."""
  for w in workers:
    if w.poll() == 2 and _worker_error(w):
      raise UserError(_worker_error(w))


def _how(code) -> str:
  return f'killed by signal {-code}' if code < 0 else f'exit {code}'


def _stop_workers(workers, early=False, log=print) -> None:
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
    error = _worker_error(w)
    if early or code == 0:
      continue
    if code == 2 and error:
      errors.append(error)
    else:
      log(f'note: worker process {i} ended early ({_how(code)}); this process finished '
          f'its runs')
  if errors:
    raise UserError(errors[0])


def worker_main(workdir, index, parent_pid, error_fd='-1') -> None:
  """A worker of a launch (its config pickled on stdin): train the claimable
  runs quietly (the parent prints the tables); stop, saving, if the parent
  goes away. A UserError goes to the parent through `error_fd`, which
  stops the launch with it."""
  signals.install(quiet=True)

  def watch_parent():
    while os.getppid() == int(parent_pid):
      time.sleep(1.0)
    os.kill(os.getpid(), signal.SIGTERM)
  threading.Thread(target=watch_parent, daemon=True).start()
  config = pickle.load(sys.stdin.buffer)
  with config.unlocked():
    config.progress = False
  locks.join_launch(f'pid {parent_pid} on {socket.gethostname()}', f'worker {index}')
  try:
    compiles.use_disk_cache(config.compile_cache_dir, config.compile_cache_gb)
    ds = data_lib.load(config)
    data_lib.check_unchanged(config, ds)  # the file the launch hashed, or stop
    with parallel.use_mesh(parallel.make_mesh(config.devices)):
      _run_all(config, ds, list(run_specs(config)), workdir,
               lambda line: print(f'[worker {index}] {line}', flush=True))
  except signals.Terminated:
    sys.exit(signals.SAVED[1])
  except UserError as e:
    if int(error_fd) >= 0:
      os.write(int(error_fd), str(e).encode(errors='backslashreplace'))
    else:
      print(f'[worker {index}] error: {e}', file=sys.stderr, flush=True)
    sys.exit(2)


def _groups(config, specs) -> list[list[RunSpec]]:
  """Runs trained together: with config.vmap_seeds the seeds of each
  (training type, optimizer, swept values), else each run alone."""
  if not config.vmap_seeds:
    return [[s] for s in specs]
  groups = {}
  for spec in specs:
    groups.setdefault(spec.stem, []).append(spec)
  return list(groups.values())


def _finished(workdir, spec):
  """The run's results if some process has finished it, else None."""
  path = os.path.join(workdir, spec.name, results.RESULTS)
  return results.read_run(path) if os.path.exists(path) else None


def _label(group) -> str:
  return group[0].name if len(group) == 1 else (
      f'{group[0].stem}, seeds {[s.seed for s in group]} as one program')


def _claim(workdir, group) -> locks.Claim:
  return locks.Claim(os.path.join(workdir, s.name, locks.RUN_LOCK) for s in group)


def _run_all(config, ds, specs, workdir, log, check=None) -> dict:
  """Train the runs nobody else holds, each under its run lock; then wait
  for the ones other processes hold (a crashed holder's runs are trained
  here once the OS drops its locks). `check()` runs before each group (the
  parent's look at its workers)."""
  all_results, todo = {}, []
  for spec in specs:
    done = _finished(workdir, spec)
    if done is not None:
      log(f'{spec.name} finished earlier; reading '
          f'{os.path.join(workdir, spec.name, results.RESULTS)}')
      all_results[spec.name] = done
    else:
      todo.append(spec)
  groups = _groups(config, todo)

  def train_held(i, claim, by='another process'):
    try:
      if check is not None:
        check()
      all_results.update(_train_claimed(config, ds, groups[i - 1], workdir, log,
                                        f'run {i}/{len(groups)}', by))
    finally:
      claim.release()

  held = []
  for i, group in enumerate(groups, 1):
    claim = _claim(workdir, group)
    ours = claim.launch_roles()  # its holder, or last holder, is of this launch
    if claim.acquire(blocking=False):
      train_held(i, claim, ours or 'another process')
    else:
      ours = claim.launch_roles()  # read again: the holder has written itself by now
      log(f'{_label(group)}: {ours} of this launch has it; taking the next' if ours else
          f'{_label(group)}: another process holds it ({claim.holders()}); taking the next')
      held.append((i, ours))
  for i, ours in held:
    claim = _claim(workdir, groups[i - 1])
    if not ours:
      log(f'waiting for {_label(groups[i - 1])} ({claim.holders()})')
    claim.acquire(blocking=True)
    train_held(i, claim, ours or 'another process')
  return {spec.name: all_results[spec.name] for spec in specs}


def _train_claimed(config, ds, group, workdir, log, heading, by) -> dict:
  """A claimed group: runs another process (`by`) finished meanwhile are
  read back (quietly where `by` is this launch's own), the rest trained
  (resuming from their checkpoints)."""
  signals.check()  # SIGTERM during the previous group: stop before this one
  out, rest = {}, []
  for spec in group:
    done = _finished(workdir, spec)
    if done is not None:
      if by == 'another process':
        log(f'{spec.name} finished by another process; reading its results')
      out[spec.name] = done
    else:
      rest.append(spec)
  if not rest:
    return out
  runs = [protocol.RunSettings(s.name, s.seed, run_config(config, s),
                         os.path.join(workdir, s.name)) for s in rest]
  for run in runs:  # a launch with allow_config_change may have replaced it
    path = os.path.join(run.folder, results.RUN_CONFIG)
    if not os.path.exists(path):
      results.write_json(path, run.config.to_dict())
    elif config_lib.differing_fields(results.read_run_config(path), run.config.to_dict()):
      raise UserError(f'{run.folder} was claimed by a launch with another config while '
                      f'this one started; relaunch to see which config it holds')
  with signals.saving_loop():  # from here on SIGTERM stops at a saved point
    log(f'{heading}: {_label(rest)}')
    for run, res in zip(runs, protocol.run_group(ds, runs, workdir, log)):
      out[run.name] = res
  return out


def _run_synthetic(config, workdir: str, log=print) -> dict:
  del log
  from dash_jax import synthetic
  return synthetic.run_synthetic(config, workdir)


EXPERIMENTS: dict[str, Callable[..., dict]] = {
    'incremental': run_incremental,
    'synthetic': _run_synthetic,
}


def run(config, workdir: str, log=print) -> dict:
  """Run a launch of `config.experiment` into `workdir`."""
  name = config.experiment
  if name not in EXPERIMENTS:
    raise UserError(f'unknown experiment {name!r}; valid: {", ".join(sorted(EXPERIMENTS))}')
  return EXPERIMENTS[name](config, usable_workdir(workdir), log)
