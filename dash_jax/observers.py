"""What a run shows while it works: progress bars, a line per experiment,
TensorBoard scalars and HParams in the run folder, (outputs.wandb) Weights &
Biases, and (outputs.diagnostics) the original code's extra measurements.
Kept out of the experiment loop, which only calls the four hooks below;
nothing here changes what a run computes.

    tensorboard --logdir WORKDIR
"""
from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
import types

from tqdm import auto as tqdm

from dash_jax import diagnostics as diagnostics_lib
from dash_jax import results
from dash_jax import settings as settings_lib
from dash_jax.errors import UserError



def _tensorboard_without_tf():
  # tensorboard writes files through TensorFlow when it is installed
  # (~3 s to import); its 'notf' marker makes it use its own stub instead.
  sys.modules.setdefault('tensorboard.compat.notf',
                         types.ModuleType('tensorboard.compat.notf'))


def _quiet_writer_threads(thread_type) -> None:
  """TensorBoard's writer thread re-raises its error (a read-only or full
  disk) after storing it for the main thread, and Python prints that as a
  traceback ('Exception in thread ...'). The main thread reports it, in one
  line (ScalarWriter._failing), so only those threads' errors go unprinted."""
  previous = threading.excepthook
  if getattr(previous, 'dash_jax', False):
    return

  def hook(args):
    if isinstance(args.thread, thread_type) and issubclass(args.exc_type, Exception):
      return
    previous(args)
  hook.dash_jax = True
  threading.excepthook = hook


class ScalarWriter:
  """TensorBoard scalars in `logdir`, through tensorboard's own event-file
  writer (a background thread; no TensorFlow or PyTorch import, ~20 us a
  value), so a per-epoch scalar costs nothing next to the epoch. A write
  that fails (in that thread or here) is one UserError naming the file,
  raised once; the writer is then dropped."""

  def __init__(self, logdir):
    _tensorboard_without_tf()
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer import event_file_writer
    _quiet_writer_threads(event_file_writer._AsyncWriterThread)
    self._event, self._summary = event_pb2.Event, summary_pb2.Summary
    self._path, self._writer = logdir, None
    with self._failing():
      self._writer = event_file_writer.EventFileWriter(logdir, flush_secs=30)
      self._path = getattr(self._writer, '_file_name', logdir)

  @contextlib.contextmanager
  def _failing(self):
    try:
      yield
    except Exception as e:  # noqa: BLE001 - whatever the writer thread stored
      writer, self._writer = self._writer, None  # reported once: nothing more written
      if writer is not None:
        with contextlib.suppress(Exception):
          writer._async_writer._closed = True  # its thread is dead; close() would raise again
      why = e.strerror if isinstance(e, OSError) and e.strerror else f'{type(e).__name__}: {e}'
      raise UserError(f'writing TensorBoard scalars to {os.fsdecode(self._path)} failed '
                      f'({why}); fix that (or pass --config.tensorboard=False) and re-run '
                      f'the same command to resume') from None

  def _add(self, event):
    if self._writer is not None:
      with self._failing():
        self._writer.add_event(event)

  def scalar(self, tag, value, step):
    value = self._summary.Value(tag=tag, simple_value=float(value))
    self._add(self._event(wall_time=time.time(), step=int(step),
                          summary=self._summary(value=[value])))

  def hparams(self, values: dict, trial_id: str):
    """The run's row in TensorBoard's HParams view (its metrics: the scalars)."""
    from tensorboard.plugins.hparams import summary_v2
    summary = summary_v2.hparams_pb(values, trial_id=trial_id)
    self._add(self._event(wall_time=time.time(), step=0, summary=summary))

  def flush(self):
    if self._writer is not None:
      with self._failing():
        self._writer.flush()

  def close(self):
    if self._writer is not None:
      with self._failing():
        self._writer.close()


def hparams(s: settings_lib.RunSettings) -> dict:
  """What tells a run from the others of its launch: training type,
  optimizer, seed and the swept fields' values."""
  return {'train_type': s.train_type, 'optimizer': s.optim.optimizer, 'seed': s.seed,
          **dict(s.swept)}


class WandbLogger:
  """The same scalars and the run's config in Weights & Biases (optional:
  the package is not a requirement; WANDB_MODE=offline works offline)."""

  def __init__(self, run: settings_lib.Run):
    try:
      import wandb
    except ImportError:
      raise UserError('config.wandb=True needs the wandb package: pip install wandb '
                      '(or drop --config.wandb)') from None
    self.run = wandb.init(project='dash-jax', name=run.name, dir=run.folder, group=run.stem,
                          config=run.recorded, reinit='create_new')

  def log(self, values: dict, step: int):
    self.run.log(values, step=int(step))

  def finish(self, summary: dict):
    self.run.summary.update(summary)
    self.run.finish()


class RunObserver:
  """Hooks of one run: experiment_start, on_epoch, experiment_end, close."""

  def __init__(self, run: settings_lib.Run, *, data_for, chunk_size, log=print,
               completed=(), bars=True):
    """`data_for()` gives the run's (data, buffer_idx), read only when
    diagnostics measure on them; `bars`: whether this observer may show
    progress bars (one a group does)."""
    s = run.settings
    self.name, self._log, self.stop = run.name, log, s.stop
    # experiment -> why it may not converge ('' = nothing known); set by the loop
    self.not_converged_cause = lambda experiment: ''
    self.num_chunks = s.chunks.num_chunks
    # disable=None: tqdm shows bars only on a terminal.
    disable = None if s.outputs.progress and bars else True
    self.exp_bar = tqdm.tqdm(total=self.num_chunks, initial=len(completed),
                             desc=run.name, unit='exp', leave=False, disable=disable)
    self.epoch_bar = tqdm.tqdm(total=s.stop.max_epoch, desc='  epochs', unit='ep',
                               leave=False, disable=disable)
    self.epochs_before = sum(e['epochs'] for e in completed)  # TensorBoard step base
    self.records = list(completed)
    self.writer = ScalarWriter(run.folder) if s.outputs.tensorboard else None
    if self.writer is not None:
      self.writer.hparams(hparams(s), trial_id=run.name)
    self.wandb = WandbLogger(run) if s.outputs.wandb else None
    self.diagnostics = None
    if s.outputs.diagnostics:
      self.diagnostics = diagnostics_lib.Diagnostics(
          *data_for(), chunk_size, s.chunks.test_batch_size)

  def log(self, line):
    """Print without tearing the bars."""
    with (self.exp_bar.external_write_mode() if not self.exp_bar.disable
          else contextlib.nullcontext()):
      self._log(line)

  def experiment_start(self, experiment, state, resumed_epochs=0):
    """Right before training experiment j (after the 'before' intervention;
    `resumed_epochs` > 0 when it resumes from a checkpoint mid-experiment)."""
    self.epoch_bar.reset(total=self.stop.max_epoch)
    self.epoch_bar.update(resumed_epochs)
    self.epoch_bar.set_postfix_str('', refresh=False)
    self.epoch_bar.set_description(f'  exp {experiment} epochs')
    if self.diagnostics is not None:
      self.diagnostics.start(experiment, state, resumed=resumed_epochs > 0)

  def on_epoch(self, epoch, acc, loss, state=None):
    """train_until_converged's per-epoch callback (values already on host)."""
    self.epoch_bar.update(1)
    if not self.epoch_bar.disable:
      self.epoch_bar.set_postfix(acc=f'{acc:.3f}', loss=f'{loss:.3f}', refresh=False)
    if self.writer is not None:
      self.writer.scalar('epoch/train_acc', acc, self.epochs_before + epoch)
      self.writer.scalar('epoch/train_loss', loss, self.epochs_before + epoch)
    if self.wandb is not None:
      self.wandb.log({'epoch/train_acc': acc, 'epoch/train_loss': loss},
                     self.epochs_before + epoch)
    if self.diagnostics is not None and state is not None:
      self.diagnostics.epoch(epoch, state)

  def experiment_end(self, record, state, stats):
    """After evaluation, before the 'after' intervention; adds the
    diagnostics to `record`, logs the experiment's line and scalars."""
    j = record['experiment']
    self.epochs_before += record['epochs']
    self.records.append(record)
    if self.diagnostics is not None:
      record['diagnostics'] = self.diagnostics.end(state)
    self.log(f'  [{self.name}] exp {j:3d}/{self.num_chunks}  n={record["num_train"]:6d}  '
             f'epochs={record["epochs"]:4d}  steps={record["steps"]:6d}  '
             f'train_acc={stats.last_epoch_acc:.3f}  test_acc={record["test_acc"]:.4f}  '
             f'{record["wall_s"]:.1f}s'
             + ('' if record.get('converged', True) else self._not_converged(j)))
    if self.writer is not None:
      for k in ('test_acc', 'test_loss', 'train_acc', 'train_loss', 'steps',
                'epochs', 'wall_s'):
        self.writer.scalar(f'experiment/{k}', record[k], j)
      for k, v in record.get('diagnostics', {}).items():
        if isinstance(v, list):
          for e, x in enumerate(v):
            self.writer.scalar(f'diagnostics/{k}_epoch{e}', x, j)
        else:
          self.writer.scalar(f'diagnostics/{k}', v, j)
      if j == self.num_chunks:
        for k, v in self.final().items():
          self.writer.scalar(f'final/{k}', v, j)
      self.writer.flush()
    if self.wandb is not None:
      self.wandb.log({'experiment': j, **{
          f'experiment/{k}': record[k] for k in ('test_acc', 'test_loss', 'train_acc',
                                                 'train_loss', 'steps', 'epochs', 'wall_s')},
          **{f'diagnostics/{k}': v for k, v in record.get('diagnostics', {}).items()
             if not isinstance(v, list)}}, self.epochs_before)
    self.exp_bar.update(1)

  def _not_converged(self, j) -> str:
    cause = self.not_converged_cause(j)
    return (f'  NOT CONVERGED (max_epoch={self.stop.max_epoch} before '
            f'converge_acc={self.stop.converge_acc})' + (f'; {cause}' if cause else ''))

  def final(self) -> dict:
    """The headline figures of the experiments so far (all, once finished)."""
    summary = results.summarise(self.records)
    return {k: summary[k] for k in results.SUMMARY_FIELDS}

  def close(self):
    self.epoch_bar.close()
    self.exp_bar.close()
    if self.writer is not None:
      self.writer.close()
    if self.wandb is not None:
      self.wandb.finish(self.final() if len(self.records) == self.num_chunks else {})
