"""The incremental protocol: data arrives in chunks, train again on all of it.

One run = one (training type, optimizer, seed). Experiment j trains on chunks
1..j until converged, is evaluated on the test set, and the training type's
interventions run around it. A launch runs every listed combination.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
import time

import jax
import numpy as np

from dash_jax import config as config_lib
from dash_jax import data as data_lib
from dash_jax import (checkpoint, compiles, interventions, models, monitor, optim,
                      parallel, report, sota, summary, train)
from dash_jax.errors import UserError

RESULTS = 'results.json'  # written once, when a run has finished
RUN_CONFIG = 'config.json'  # written when a run starts: guards its workdir
# Fields of an experiment's record that say how it ran, not what it computed
# (they differ between a resumed and an uninterrupted run, or a warm process).
EXECUTION_RECORD_FIELDS = ('wall_s', 'compiles', 'compile_s')


def resolve_epoch_mode(config) -> str:
  """'scan' compiles an epoch into one loop; XLA:CPU runs conv loop bodies
  far slower than the same jitted step called from Python, so convnets on
  CPU use 'loop'."""
  if config.epoch_mode != 'auto':
    return config.epoch_mode
  return models.epoch_mode(config.model, jax.default_backend())


def normalisation(config, ds: data_lib.Dataset):
  """(mean, std) in pixel units: dataset statistics, or [0, 1] scaling for
  the MLP on image datasets (the original code does not normalise there)."""
  mode = config.normalize
  if mode == 'auto':  # the original normalises Tiny-ImageNet for every model
    mode = ('unit' if (config.model == 'mlp' and ds.name not in
                       ('digits', 'tiny_imagenet')) else 'standard')
  if mode == 'unit':
    return np.zeros_like(ds.mean), np.full_like(ds.std, 255.0)
  return ds.mean, ds.std


@functools.lru_cache(maxsize=None)
def _optimizer(learning_rate, momentum, weight_decay):
  return optim.sgd(learning_rate, momentum, weight_decay)


def make_optimizer(config):
  """One optax object per setting: jit keys its cache on it, so runs of a
  launch share compiled steps instead of recompiling each run."""
  return _optimizer(config.learning_rate, config.momentum, config.weight_decay)


@functools.lru_cache(maxsize=None)
def _model(name, config_json, num_classes):
  import ml_collections
  config = ml_collections.ConfigDict(json.loads(config_json))
  return models.get(name).build(config, num_classes)


def make_model(config, num_classes):
  """One module object per setting (see make_optimizer)."""
  return _model(config.model, config.to_json(), num_classes)


def open_checkpoints(config, folder, state, key, mesh, log):
  """The run's (or seed group's) checkpoint manager in folder/checkpoints and
  its newest readable (state, key, meta) on the mesh, or None."""
  ckpts = checkpoint.RunCheckpoints(os.path.join(folder, 'checkpoints'),
                                    keep=config.keep_checkpoints,
                                    min_interval_s=config.checkpoint_min_interval_s)
  restored = ckpts.restore_latest(state, key, log)
  if restored is not None:
    state, key, meta = restored
    restored = (*parallel.replicate((state, key), mesh), meta)
  return ckpts, restored


def step_config(config, spec, ds) -> train.StepConfig:
  """What the run's training type, optimizer and recipe compile into the step."""
  return train.StepConfig(
      regularizer=interventions.regularizer(config, spec.train_type),
      sam_rho=config.rho if spec.optimizer == 'sam' else None,
      sam_bn_second_pass=config.sam_bn_second_pass,
      augment=sota.augmentation(config, ds.name),
      lr_schedule=sota.lr_schedule(config))


def chunk_buffer(num_train, num_chunks, seed):
  """Dataset indices in buffer order: a seeded random split into equal
  chunks (remainder dropped), chunk 1 first."""
  chunk_size = num_train // num_chunks
  if chunk_size < 1:
    raise UserError(f'num_chunks={num_chunks} exceeds the {num_train} training '
                    f'examples; lower --config.num_chunks')
  order = np.random.default_rng([seed, 0xC4A2]).permutation(num_train)
  return order[:chunk_size * num_chunks].astype(np.int32), chunk_size


def run_one(config, ds: data_lib.Dataset, spec: config_lib.RunSpec, run_dir: str,
            log=print) -> dict:
  """One run of the protocol; writes run_dir/results.json and returns it."""
  config = run_config(config, spec)
  training_type = interventions.TRAINING_TYPES[spec.train_type]
  model_spec = models.get(config.model)
  model = make_model(config, ds.num_classes)
  tx = make_optimizer(config)
  step_cfg = step_config(config, spec, ds)
  mode = resolve_epoch_mode(config)

  mesh = parallel.current_mesh()  # set by run(); data and state live on all of it
  counter = compiles.CompileCounter()
  mean, std = normalisation(config, ds)
  labels = data_lib.noisy_labels(ds.train_y, config.label_noise, ds.num_classes, spec.seed)
  data = parallel.replicate({
      'train_x': ds.train_x, 'train_y': labels.astype(np.int32),
      'mean': mean.astype(np.float32), 'std': std.astype(np.float32)}, mesh)
  test_x, test_y = parallel.replicate((ds.test_x, ds.test_y.astype(np.int32)), mesh)
  buffer_np, chunk_size = chunk_buffer(len(labels), config.num_chunks, spec.seed)
  buffer_idx = parallel.replicate(buffer_np, mesh)

  def fresh_state(key):
    return parallel.replicate(train.create_state(
        model, tx, key, ds.input_shape, keep_init=step_cfg.regularizer is not None),
        mesh)

  key = parallel.replicate(jax.random.PRNGKey(spec.seed), mesh)
  key, init_key = jax.random.split(key)
  state = fresh_state(init_key)
  experiments, first, progress, elapsed = [], 1, None, 0.0
  ckpts, restored = open_checkpoints(config, run_dir, state, key, mesh, log)
  if restored is not None:
    state, key, meta = restored
    experiments, first = meta['experiments'], meta['experiment']
    if meta['progress'] is not None:  # stopped inside experiment `first`
      progress, elapsed = train.Progress(**meta['progress']), meta['elapsed']
    log(f'  [{spec.name}] resuming at experiment {first}'
        + (f', epoch {progress.epochs + 1}' if progress else ''))

  def save(j, state, key, progress=None, elapsed=0.0):
    epoch = progress.epochs if progress else 0
    ckpts.save(j * (config.max_epoch + 1) + epoch, state, key, {
        'experiment': j, 'experiments': experiments, 'elapsed': elapsed,
        'progress': dataclasses.asdict(progress) if progress else None})

  observer = monitor.RunObserver(config, spec.name, run_dir, data=data,
                                 buffer_idx=buffer_idx, chunk_size=chunk_size,
                                 log=log, completed=experiments)
  try:
    for j in range(first, config.num_chunks + 1):
      start = time.perf_counter() - elapsed
      n = j * chunk_size

      def context(k):
        return interventions.Context(
            key=k, experiment=j, config=config, fresh_state=fresh_state,
            direction=lambda s: train.full_data_direction(
                s, data, buffer_idx, j, config.dash_alpha, chunk_size=chunk_size,
                mode=mode),
            head=tuple(model_spec.head))

      if j >= 2 and training_type.before is not None and progress is None:
        key, k = jax.random.split(key)
        state = training_type.before(state, context(k))
      observer.experiment_start(j, state, resumed_epochs=progress.epochs if progress else 0)
      state, key, stats = train.train_until_converged(
          state, key, data, buffer_idx, n, step_cfg=step_cfg,
          batch_size=config.batch_size, max_epoch=config.max_epoch,
          converge_acc=config.converge_acc, mode=mode, experiment=j,
          progress=progress, checkpoint_every=config.checkpoint_every_epochs,
          on_epoch=observer.on_epoch,
          epochs_per_call=1 if config.diagnostics else train.EPOCHS_PER_CALL,
          on_checkpoint=lambda s, k, p: save(j, s, k, p, time.perf_counter() - start))
      progress, elapsed = None, 0.0
      test_acc, test_loss = np.asarray(train.evaluate(
          state, test_x, test_y, data['mean'], data['std'],
          batch_size=config.test_batch_size)).tolist()
      record = {'experiment': j, 'num_train': n, 'test_acc': test_acc,
                'test_loss': test_loss, 'train_acc': stats.train_acc,
                'train_loss': stats.train_loss, 'steps': stats.steps,
                'epochs': stats.epochs, 'wall_s': time.perf_counter() - start}
      record.update(compile_fields(counter))
      observer.experiment_end(record, state, stats)  # line, TensorBoard, diagnostics
      experiments.append(record)
      if training_type.after is not None:
        key, k = jax.random.split(key)
        state = training_type.after(state, context(k))
      save(j + 1, state, key)
  finally:
    ckpts.close()
    observer.close()

  results = {'config': config.to_dict(), 'experiments': experiments,
             'summary': summarise(experiments)}
  write_json(os.path.join(run_dir, RESULTS), results)
  return results


def compile_fields(counter) -> dict:
  """XLA compiles since the previous experiment's record (its 'after'
  intervention, this one's 'before', training and evaluation)."""
  done = counter.since_last()
  return {'compiles': done.count, 'compile_s': done.seconds}


def summarise(experiments) -> dict:
  acc = [e['test_acc'] for e in experiments]
  steps = [e['steps'] for e in experiments]
  return {'test_acc_last': acc[-1], 'test_acc_mean': float(np.mean(acc)),
          'steps_last': steps[-1], 'steps_mean': float(np.mean(steps)),
          'steps_total': int(np.sum(steps)),
          'compiles_total': int(sum(e.get('compiles', 0) for e in experiments))}


def _read_json(path):
  with open(path) as f:
    return json.load(f)


def write_json(path, obj):
  """Atomic: a reader never sees half a file."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    json.dump(obj, f, indent=2)
  os.replace(tmp, path)


def check_workdir(config, workdir, specs, log=print):
  """Refuse a workdir whose runs were made with another config, unless
  config.allow_config_change: then those runs are moved aside and redone."""
  for spec in specs:
    run_dir = os.path.join(workdir, spec.name)
    path = os.path.join(run_dir, RUN_CONFIG)
    if not os.path.exists(path):
      continue
    saved = _read_json(path)
    diff = config_lib.differing_fields(saved, run_config(config, spec).to_dict())
    if not diff:
      continue
    if not config.allow_config_change:
      raise UserError(
          f'{run_dir} was made with a different config ({"; ".join(diff)}); '
          f'use another --workdir, or --config.allow_config_change=True to '
          f'redo such runs (old folders are kept as NAME.replaced-N)')
    backup = _free_name(run_dir + '.replaced')
    os.replace(run_dir, backup)
    log(f'{spec.name}: config changed ({"; ".join(diff)}); old run kept in {backup}')


def _free_name(prefix):
  i = 1
  while os.path.exists(f'{prefix}-{i}'):
    i += 1
  return f'{prefix}-{i}'


def run_config(config, spec):
  """The config of one run: the launch's, with its own single values."""
  config = config.copy_and_resolve_references()
  with config.unlocked():
    config.train_type, config.optimizer = spec.train_type, spec.optimizer
    config.seeds, config.seed = str(spec.seed), spec.seed
    config.model = models.resolve_name(config)  # sota: resnet18 -> resnet18_sota
  return config


def run(config, workdir: str, log=print) -> dict:
  """Every run of the launch (finished ones are read back, unfinished ones
  resume from their checkpoints), then the summary table over seeds."""
  if config.get('experiment', 'incremental') == 'synthetic':
    from dash_jax import synthetic
    return synthetic.run_synthetic(config, workdir)
  config_lib.validate(config)
  specs = list(config_lib.run_specs(config))
  hosts = parallel.initialize_hosts(config)
  compiles.use_disk_cache(config.compile_cache_dir, config.compile_cache_gb)
  if hosts.is_main:
    check_workdir(config, workdir, specs, log)
  hosts.barrier('workdir checked')
  ds = data_lib.load(config)
  chunk_buffer(len(ds.train_y), config.num_chunks, 0)  # fail early if too many
  with parallel.use_mesh(parallel.make_mesh(config.devices)):
    all_results = _run_all(config, ds, hosts.share(specs), workdir, log)
  hosts.barrier('runs finished')
  if not hosts.is_main:  # the main process writes the launch's tables
    return all_results
  all_results = {s.name: all_results.get(s.name) or  # other processes' runs from disk
                 _read_json(os.path.join(workdir, s.name, RESULTS)) for s in specs}
  table = summary.write(workdir, list(all_results.values()))
  log(table)
  rep = report.write([workdir], workdir)  # every run in the workdir, not only this launch's
  log('report: ' + ', '.join(rep.paths.values()))
  return all_results


def _run_all(config, ds, specs, workdir, log) -> dict:
  if config.vmap_seeds:
    return _run_seed_groups(config, ds, specs, workdir, log)
  all_results = {}
  for i, spec in enumerate(specs, 1):
    run_dir = os.path.join(workdir, spec.name)
    results_path = os.path.join(run_dir, RESULTS)
    if os.path.exists(results_path):
      log(f'run {i}/{len(specs)}: {spec.name} finished earlier; reading {results_path}')
      all_results[spec.name] = _read_json(results_path)
      continue
    log(f'run {i}/{len(specs)}: {spec.name}')
    write_json(os.path.join(run_dir, RUN_CONFIG), run_config(config, spec).to_dict())
    all_results[spec.name] = run_one(config, ds, spec, run_dir, log)
  return all_results


def _run_seed_groups(config, ds, specs, workdir, log) -> dict:
  """config.vmap_seeds: the unfinished seeds of each (training type,
  optimizer) train together as one vmapped program (dash_jax/seeds.py)."""
  from dash_jax import seeds as seeds_lib
  all_results, groups = {}, {}
  for spec in specs:
    path = os.path.join(workdir, spec.name, RESULTS)
    if os.path.exists(path):
      log(f'{spec.name} finished earlier; reading {path}')
      all_results[spec.name] = _read_json(path)
    else:
      groups.setdefault((spec.train_type, spec.optimizer), []).append(spec)
  for i, group in enumerate(groups.values(), 1):
    log(f'group {i}/{len(groups)}: {group[0].train_type}-{group[0].optimizer}, '
        f'seeds {[s.seed for s in group]} as one program')
    for spec in group:
      write_json(os.path.join(workdir, spec.name, RUN_CONFIG),
                 run_config(config, spec).to_dict())
    for spec, res in zip(group, seeds_lib.run_seeds(config, ds, group, workdir, log)):
      all_results[spec.name] = res
  return {spec.name: all_results[spec.name] for spec in specs}
