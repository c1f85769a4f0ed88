"""Discrete feature-learning model of DASH Section 4: why warm starting hurts.

No network: a "model" is a set of learned features per class, and training is
a greedy rule. Among the examples that still have gradient, the most frequent
unlearned feature is learned once it occurs at least ``gamma`` times; an
example loses its gradient once ``tau`` of its features are learned; training
stops when no unlearned feature reaches ``gamma``. Examples that still have
gradient then are memorised. Data arrive in ``num_experiments`` chunks of
``num_examples`` and each experiment trains once more:

    method  keeps learned features  old examples can regain gradient
    random  no (cold start)         yes (all data, from scratch)
    warm    yes                     no (memorised examples stay at zero gradient)
    ideal   yes                     yes (memorisation is forgotten)

Warm never looks at memorised examples again, so rare features, which need
evidence pooled over several chunks, are never learned; ideal keeps the
learned features but lets old unexplained examples count, which recovers
random's accuracy while training on a small fraction of random's examples
(default run, summed over experiments: 0.15M examples with gradient against
random's 1.3M and warm's 0.03M).

Classes never interact (a class's feature counts come only from its own
examples, its learned features only silence its own examples), so each
(seed, class) pair is one row of a batch and all rows train in lockstep:
the Python loops run over methods, experiments and learning steps, never
over examples. (The notebook learns one feature per step over all classes
at once; as classes never interact, each class learns the same sequence.)

Deviations from the authors' notebook (Discrete_Feature_Learning.ipynb):
  * Test accuracy is the expected value of the 1/C guess (correct + (1 - correct)
    / C), not one coin flip per test example: same mean, no extra noise.
  * Each seed draws its own test set from a stream separate from training
    (the notebook reseeds with a constant, so every seed shares one test draw),
    and training data is drawn chunk by chunk, so a run with fewer experiments
    sees exactly the first chunks of a longer run.
  * Random numbers come from ``np.random.default_rng``, so values differ from
    the notebook's draws; the rule, sizes and metrics are the same (the
    training time of an experiment is the number of examples with non-zero
    gradient when its training starts; std is over seeds with ddof=0).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import NamedTuple

import numpy as np

from dash_jax.errors import UserError

METHODS = ('random', 'warm', 'ideal')
METRICS = ('test_accuracy', 'learned_features', 'training_time', 'memorised')


@dataclasses.dataclass(frozen=True)
class SyntheticParams:
  """Validated experiment parameters (launch/synthetic.py builds them from a config)."""
  num_examples: int = 1000  # arriving per experiment, split evenly over classes
  num_experiments: int = 50
  num_classes: int = 2
  num_features: int = 50  # per class
  gamma: int = 50  # occurrences needed to learn a feature
  tau: int = 3  # learned features that silence an example
  prob_low: float = 0.0
  prob_high: float = 0.2
  seeds: tuple[int, ...] = tuple(range(10))
  num_test: int = 10000  # test examples per seed, split evenly over classes


class SyntheticData(NamedTuple):
  """One seed's data; features are feature-major so a feature's column is contiguous."""
  feature_probs: np.ndarray  # (C, F), descending per class
  train_features: np.ndarray  # (C, F, num_experiments * examples per class) bool
  test_features: np.ndarray  # (C, F, test examples per class) bool


class TrainResult(NamedTuple):
  learned: np.ndarray  # (B, F) bool
  start_gradient: np.ndarray  # (B, n) bool: had gradient when training began
  end_gradient: np.ndarray  # (B, n) bool: still has gradient, i.e. memorised


class MethodHistory(NamedTuple):
  learned: np.ndarray  # (B, J, F) bool, learned features after each experiment
  training_time: np.ndarray  # (B, J) examples with non-zero gradient at the start
  memorised: np.ndarray  # (B, J) examples memorised after each experiment


# ----------------------------------------------------------------------------
# Data


def make_data(seed: int, params: SyntheticParams) -> SyntheticData:
  """Draws chunk by chunk so fewer experiments give a prefix of the same data."""
  num_classes, num_features = params.num_classes, params.num_features
  per_class = params.num_examples // num_classes
  rng = np.random.default_rng(seed)
  probs = rng.uniform(params.prob_low, params.prob_high, size=(num_classes, num_features))
  probs = -np.sort(-probs, axis=1)
  uniforms = rng.random((params.num_experiments, num_classes, per_class, num_features),
                        dtype=np.float32)
  train = uniforms < probs[None, :, None, :]
  train = train.transpose(1, 3, 0, 2).reshape(num_classes, num_features, -1)
  test_rng = np.random.default_rng([seed, 1])  # independent of num_experiments
  test_uniforms = test_rng.random((num_classes, num_features, params.num_test // num_classes),
                                  dtype=np.float32)
  test = test_uniforms < probs[:, :, None]
  return SyntheticData(probs, np.ascontiguousarray(train), test)


# ----------------------------------------------------------------------------
# Training rule


class Features(NamedTuple):
  """Binary features of a batch of independent rows, stored twice for speed.

  Learning a feature reads its column; silencing examples reads their rows.
  Each layout makes one of those reads contiguous.
  """
  by_feature: np.ndarray  # (B, F, N) bool
  by_example: np.ndarray  # (B * N, F) uint8


def as_features(by_feature: np.ndarray) -> Features:
  rows, num_features, total = by_feature.shape
  by_example = np.ascontiguousarray(by_feature.transpose(0, 2, 1), dtype=np.uint8)
  return Features(by_feature, by_example.reshape(rows * total, num_features))


def learned_hits(by_feature: np.ndarray, learned: np.ndarray) -> np.ndarray:
  """(B, n) number of each example's features that are learned."""
  hits = np.zeros(by_feature.shape[::2], _hits_dtype(by_feature.shape[1]))
  for feature in np.flatnonzero(learned.any(axis=0)):  # a loop over features, not examples
    hits += by_feature[:, feature] & learned[:, feature, None]
  return hits


def _hits_dtype(num_features: int):
  return np.uint8 if num_features < 256 else np.int32


def train(features: Features, learned: np.ndarray, gamma: int, tau: int, start: int = 0,
          stop: int | None = None) -> TrainResult:
  """Greedy learning on examples [start, stop) of every row until no feature reaches gamma.

  learned: (B, F) bool, the features known before training. Rows learn in
  lockstep, one feature per row per step. Counts are updated incrementally:
  a step adds the learned feature's column to the hit counts and subtracts
  the feature rows of the examples it silences.
  """
  num_rows, _, total = features.by_feature.shape
  stop = total if stop is None else stop
  by_feature, width = features.by_feature[:, :, start:stop], stop - start
  row_ids = np.arange(num_rows)
  learned = learned.copy()
  hits = learned_hits(by_feature, learned)
  start_gradient = hits < tau
  active = start_gradient.copy()
  counts = np.count_nonzero(by_feature & active[:, None, :], axis=2)
  flat_hits, flat_active = hits.reshape(-1), active.reshape(-1)
  while True:
    candidates = np.where(learned, -1, counts)
    best = candidates.argmax(axis=1)  # ties: lowest index, as the notebook's stable sort
    rows = np.flatnonzero(candidates[row_ids, best] >= gamma)
    if rows.size == 0:
      return TrainResult(learned, start_gradient, active)
    learned[rows, best[rows]] = True
    # Only examples holding the new feature change: find them once, then work on flat indices.
    holders = np.flatnonzero(by_feature[rows, best[rows]])
    holders = rows[holders // width] * width + holders % width
    flat_hits[holders] += 1
    silenced = holders[flat_active[holders] & (flat_hits[holders] >= tau)]
    if silenced.size:
      flat_active[silenced] = False
      silenced_rows, examples = np.divmod(silenced, width)
      removed = np.take(features.by_example, silenced_rows * total + start + examples, axis=0)
      first = np.flatnonzero(np.diff(silenced_rows, prepend=-1))  # rows come out sorted
      counts[silenced_rows[first]] -= np.add.reduceat(removed, first, axis=0, dtype=counts.dtype)


def run_method(method: str, features: Features, per_chunk: int, gamma: int,
               tau: int) -> MethodHistory:
  """Trains once per arriving chunk; the method decides what carries over."""
  if method not in METHODS:
    raise UserError(f'unknown method {method!r}; use one of {METHODS}.')
  num_rows, num_features, total = features.by_feature.shape
  num_experiments = total // per_chunk
  learned = np.zeros((num_rows, num_features), bool)
  memorised_before = np.zeros(num_rows, np.int64)  # warm only: old memorisation persists
  history = MethodHistory(np.zeros((num_rows, num_experiments, num_features), bool),
                          np.zeros((num_rows, num_experiments), np.int64),
                          np.zeros((num_rows, num_experiments), np.int64))
  for j in range(num_experiments):
    if method == 'random':
      learned = np.zeros_like(learned)
    start = j * per_chunk if method == 'warm' else 0  # warm sees only the new chunk
    result = train(features, learned, gamma, tau, start, (j + 1) * per_chunk)
    learned = result.learned
    history.learned[:, j] = learned
    history.training_time[:, j] = result.start_gradient.sum(axis=1)
    memorised_now = result.end_gradient.sum(axis=1)
    if method == 'warm':
      memorised_now = memorised_now + memorised_before
      memorised_before = memorised_now
    history.memorised[:, j] = memorised_now
  return history


def expected_accuracy(test_features: np.ndarray, learned: np.ndarray, tau: int) -> np.ndarray:
  """Expected accuracy: tau learned features of its class, else a 1/C guess.

  test_features: (S, C, F, m) bool; learned: (S, J, C, F) bool -> (S, J).
  """
  num_classes = test_features.shape[1]
  hits = np.matmul(learned.transpose(0, 2, 1, 3).astype(np.float32),
                   test_features.astype(np.float32))  # (S, C, J, m)
  recognised = (hits >= tau).mean(axis=(1, 3))
  return recognised + (1.0 - recognised) / num_classes


def simulate(params: SyntheticParams) -> dict[str, dict[str, np.ndarray]]:
  """All seeds and methods; returns {method: {metric: (seeds, experiments) array}}."""
  data = [make_data(seed, params) for seed in params.seeds]
  num_seeds, num_classes = len(params.seeds), params.num_classes
  train_features = np.stack([d.train_features for d in data])
  train_features = as_features(train_features.reshape(num_seeds * num_classes,
                                                      *train_features.shape[2:]))
  test_features = np.stack([d.test_features for d in data])
  per_chunk = params.num_examples // num_classes
  results = {}
  for method in METHODS:
    history = run_method(method, train_features, per_chunk, params.gamma, params.tau)
    by_class = lambda a: a.reshape(num_seeds, num_classes, *a.shape[1:])
    learned = by_class(history.learned).transpose(0, 2, 1, 3)  # (S, J, C, F)
    results[method] = {
        'test_accuracy': expected_accuracy(test_features, learned, params.tau),
        'learned_features': learned.sum(axis=(2, 3)),
        'training_time': by_class(history.training_time).sum(axis=1),
        'memorised': by_class(history.memorised).sum(axis=1),
    }
  return results


# ----------------------------------------------------------------------------
# Reporting


def summarise(results: dict[str, dict[str, np.ndarray]]) -> dict[str, dict[str, float]]:
  """Headline numbers: last experiment's accuracy and features, summed training time."""
  summary = {}
  for method, metrics in results.items():
    total_time = metrics['training_time'].sum(axis=1)
    summary[method] = {
        'final_test_accuracy_mean': float(metrics['test_accuracy'][:, -1].mean()),
        'final_test_accuracy_std': float(metrics['test_accuracy'][:, -1].std()),
        'final_learned_features_mean': float(metrics['learned_features'][:, -1].mean()),
        'final_learned_features_std': float(metrics['learned_features'][:, -1].std()),
        'total_training_time_mean': float(total_time.mean()),
        'total_training_time_std': float(total_time.std()),
        'final_memorised_mean': float(metrics['memorised'][:, -1].mean()),
    }
  return summary


def plot(results: dict[str, dict[str, np.ndarray]], path: str) -> None:
  """Three panels like the paper's Figure: mean over seeds with a +-1 std band."""
  from matplotlib.figure import Figure  # Agg canvas, no global pyplot backend state

  panels = (('test_accuracy', 'Test accuracy (%)', 100.0),
            ('learned_features', 'Learned features', 1.0),
            ('training_time', 'Examples with non-zero gradient', 1.0))
  styles = {'random': dict(color='green', linewidth=3.0),  # wide: ideal often lies on it
            'warm': dict(color='navy', linewidth=1.5),
            'ideal': dict(color='red', linewidth=1.5, linestyle='--')}
  fig = Figure(figsize=(15, 4.5))
  axes = fig.subplots(1, 3)
  for ax, (metric, label, scale) in zip(axes, panels):
    for method, metrics in results.items():
      values = metrics[metric] * scale
      mean, std = values.mean(axis=0), values.std(axis=0)
      x = np.arange(1, len(mean) + 1)
      style = styles.get(method, {})
      ax.plot(x, mean, label=method.capitalize(), **style)
      ax.fill_between(x, mean - std, mean + std, color=style.get('color'), alpha=0.15)
    ax.set_xlabel('Number of experiments')
    ax.set_ylabel(label)
  axes[0].legend()
  fig.tight_layout()
  fig.savefig(path, dpi=120)


def run_synthetic(params: SyntheticParams, recorded: dict, workdir: str) -> dict:
  """Simulate, save (`recorded`: the launch's config, as results.json
  records it), plot and print."""
  started = time.perf_counter()
  raw = simulate(params)
  wall_time = time.perf_counter() - started
  summary = summarise(raw)
  results = {
      'config': recorded,
      'params': dataclasses.asdict(params),
      'wall_time_s': wall_time,
      'summary': summary,
      'methods': {
          method: {metric: {'mean': values.mean(axis=0).tolist(),
                            'std': values.std(axis=0).tolist(),
                            'per_seed': values.tolist()}
                   for metric, values in metrics.items()}
          for method, metrics in raw.items()
      },
  }
  out_dir = os.path.join(workdir, 'synthetic')
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, 'results.json'), 'w') as f:
    json.dump(results, f, indent=1, default=str)
  plot(raw, os.path.join(out_dir, 'synthetic.png'))
  print(f'synthetic: {len(params.seeds)} seeds x {params.num_experiments} experiments, '
        f'final experiment, mean +- std over seeds')
  print(f"{'method':<8} {'test acc (%)':>14} {'learned feat':>14} {'total train time':>20}")
  for method, s in summary.items():
    print(f"{method:<8} {100 * s['final_test_accuracy_mean']:>7.2f} +- "
          f"{100 * s['final_test_accuracy_std']:<4.2f} {s['final_learned_features_mean']:>6.1f} +- "
          f"{s['final_learned_features_std']:<5.1f} {s['total_training_time_mean']:>10.0f} +- "
          f"{s['total_training_time_std']:<7.0f}")
  print(f'simulation wall time {wall_time:.2f} s; wrote {out_dir}/results.json and synthetic.png')
  return results
