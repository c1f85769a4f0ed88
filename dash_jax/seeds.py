"""Several seeds of one run as one program: vmap over a leading seed axis.

A small model leaves an accelerator mostly idle; stacking the seeds of one
(training type, optimizer) lets every compiled epoch, direction pass and
evaluation serve all of them. Each seed keeps its own labels, chunk order,
random stream and convergence rule, so its numbers are those of its own
plain run (protocol.run_one) up to float summation order. Seeds that have
converged are frozen while the others finish the experiment.

Checkpoints of the group live in WORKDIR/<train_type>-<optimizer>-seeds<a_b_c>/;
each seed still writes its own run folder (results.json, config.json,
TensorBoard scalars).
"""
from __future__ import annotations

import dataclasses
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from dash_jax import compiles, interventions, models, monitor, parallel, train
from dash_jax import data as data_lib
from dash_jax import protocol


def group_dir(workdir, specs) -> str:
  seeds = '_'.join(str(s.seed) for s in specs)
  return os.path.join(workdir, f'{specs[0].train_type}-{specs[0].optimizer}-seeds{seeds}')


def _take(tree, i):
  return jax.tree.map(lambda x: x[i], tree)


def run_seeds(config, ds: data_lib.Dataset, specs, workdir, log=print) -> list[dict]:
  """The runs of `specs` (same training type and optimizer, different seeds)
  trained together; writes each run's results.json and returns them."""
  configs = [protocol.run_config(config, spec) for spec in specs]
  config, spec = configs[0], specs[0]
  seeds = [s.seed for s in specs]
  training_type = interventions.TRAINING_TYPES[spec.train_type]
  model_spec = models.get(config.model)
  model = protocol.make_model(config, ds.num_classes)
  tx = protocol.make_optimizer(config)
  step_cfg = protocol.step_config(config, spec, ds)
  mesh = parallel.current_mesh()
  counter = compiles.CompileCounter()

  mean, std = protocol.normalisation(config, ds)
  labels = np.stack([data_lib.noisy_labels(ds.train_y, config.label_noise,
                                           ds.num_classes, s) for s in seeds])
  buffers = [protocol.chunk_buffer(labels.shape[1], config.num_chunks, s) for s in seeds]
  chunk_size = buffers[0][1]
  data = parallel.replicate({
      'train_x': ds.train_x, 'train_y': labels.astype(np.int32),
      'mean': mean.astype(np.float32), 'std': std.astype(np.float32)}, mesh)
  buffer_idx = parallel.replicate(np.stack([b for b, _ in buffers]), mesh)
  test_x, test_y = parallel.replicate((ds.test_x, ds.test_y.astype(np.int32)), mesh)

  def fresh_state(key):
    return train.create_state(model, tx, key, ds.input_shape,
                              keep_init=step_cfg.regularizer is not None)

  key, init_key = _split_pair(jnp.stack([jax.random.PRNGKey(s) for s in seeds]))
  state = jax.vmap(fresh_state)(init_key)
  state, key = parallel.replicate((state, key), mesh)

  experiments = [[] for _ in specs]
  first, progress, elapsed = 1, None, 0.0
  ckpts, restored = protocol.open_checkpoints(config, group_dir(workdir, specs), state,
                                             key, mesh, log)
  if restored is not None:
    state, key, meta = restored
    experiments, first = meta['experiments'], meta['experiment']
    if meta['progress'] is not None:
      progress = [train.Progress(**p) for p in meta['progress']]
      elapsed = meta['elapsed']
    log(f'  [seeds {seeds}] resuming at experiment {first}')

  def save(j, state, key, progress=None, elapsed=0.0):
    epoch = max(p.epochs for p in progress) if progress else 0
    ckpts.save(j * (config.max_epoch + 1) + epoch, state, key, {
        'experiment': j, 'experiments': experiments, 'elapsed': elapsed,
        'progress': [dataclasses.asdict(p) for p in progress] if progress else None})

  def intervene(fn, state, key, j):
    """A training type's (state, ctx) -> state, per seed under vmap."""
    def one(state, key, train_y, buffer_idx):
      seed_data = dict(data, train_y=train_y)
      ctx = interventions.Context(
          key=key, experiment=j, config=config, fresh_state=fresh_state,
          direction=lambda s: train.full_data_direction(
              s, seed_data, buffer_idx, j, config.dash_alpha, chunk_size=chunk_size),
          head=tuple(model_spec.head))
      return fn(state, ctx)
    return jax.vmap(one)(state, key, data['train_y'], buffer_idx)

  observers = [monitor.RunObserver(
      _quiet(c) if i else c, s.name, os.path.join(workdir, s.name), data=None,
      buffer_idx=None, chunk_size=chunk_size, log=log, completed=experiments[i])
      for i, (c, s) in enumerate(zip(configs, specs))]
  evaluate = jax.vmap(lambda s: train.evaluate(
      s, test_x, test_y, data['mean'], data['std'], batch_size=config.test_batch_size))
  try:
    for j in range(first, config.num_chunks + 1):
      start = time.perf_counter() - elapsed
      n = j * chunk_size
      if j >= 2 and training_type.before is not None and progress is None:
        key, k = _split_pair(key)
        state = intervene(training_type.before, state, k, j)
      for obs in observers:
        obs.experiment_start(j, None, resumed_epochs=progress[0].epochs if progress else 0)
      state, key, stats = train.train_seeds_until_converged(
          state, key, data, buffer_idx, n, step_cfg=step_cfg,
          batch_size=config.batch_size, max_epoch=config.max_epoch,
          converge_acc=config.converge_acc, experiment=j, seeds=seeds,
          progress=progress, checkpoint_every=config.checkpoint_every_epochs,
          on_epoch=lambda i, e, acc, loss: observers[i].on_epoch(e, acc, loss),
          on_checkpoint=lambda s, k, p: save(j, s, k, p, time.perf_counter() - start))
      progress, elapsed = None, 0.0
      test = np.asarray(evaluate(state))
      wall = time.perf_counter() - start
      compiled = protocol.compile_fields(counter)
      for i, obs in enumerate(observers):
        record = {'experiment': j, 'num_train': n, 'test_acc': float(test[i, 0]),
                  'test_loss': float(test[i, 1]), 'train_acc': stats[i].train_acc,
                  'train_loss': stats[i].train_loss, 'steps': stats[i].steps,
                  'epochs': stats[i].epochs, 'wall_s': wall, **compiled}
        obs.experiment_end(record, None, stats[i])
        experiments[i].append(record)
      if training_type.after is not None:
        key, k = _split_pair(key)
        state = intervene(training_type.after, state, k, j)
      save(j + 1, state, key)
  finally:
    ckpts.close()
    for obs in observers:
      obs.close()

  out = []
  for c, s, exps in zip(configs, specs, experiments):
    results = {'config': c.to_dict(), 'experiments': exps,
               'summary': protocol.summarise(exps)}
    protocol.write_json(os.path.join(workdir, s.name, protocol.RESULTS), results)
    out.append(results)
  return out


def _quiet(config):
  """The config of an observer that shows no progress bars (one set a group)."""
  config = config.copy_and_resolve_references()
  with config.unlocked():
    config.progress = False
  return config


def _split_pair(keys):
  """`key, k = jax.random.split(key)` for every seed."""
  pairs = jax.vmap(jax.random.split)(keys)
  return pairs[:, 0], pairs[:, 1]
