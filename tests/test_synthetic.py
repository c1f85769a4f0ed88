"""The discrete feature-learning model: hand-worked cases, invariants, paper ordering."""
import dataclasses
import json

import ml_collections
import numpy as np
import pytest

from configs.synthetic import get_config
from dash_jax import synthetic
from dash_jax.errors import UserError
from dash_jax.synthetic import SyntheticParams, as_features, run_method, train
from dash_jax.launch import synthetic as synthetic_launch


def one_row(examples, num_features):
  """Features of one batch row from a list of per-example feature-index lists."""
  by_feature = np.zeros((1, num_features, len(examples)), bool)
  for i, present in enumerate(examples):
    by_feature[0, present, i] = True
  return as_features(by_feature)


def nothing_learned(num_features, rows=1):
  return np.zeros((rows, num_features), bool)


# ----------------------------------------------------------------------------
# The learning rule on cases worked out by hand.


def test_feature_is_learned_exactly_at_gamma_occurrences():
  # f0 occurs 3 times, f1 twice; tau=3 is never reached, so nothing is silenced.
  features = one_row([[0], [0], [0, 1], [1]], num_features=3)
  result = train(features, nothing_learned(3), gamma=3, tau=3)
  assert result.learned.tolist() == [[True, False, False]]
  result = train(features, nothing_learned(3), gamma=2, tau=3)
  assert result.learned.tolist() == [[True, True, False]]


def test_only_examples_with_gradient_count_and_tau_silences():
  # f0 and f1 both occur 3 times; the tie goes to f0 (the more probable feature).
  features = one_row([[0, 1], [0, 1], [0], [1]], num_features=2)
  # tau=1: learning f0 silences e0, e1, e2; f1 is left with one occurrence (e3) < gamma,
  # although it occurs 3 times in the data.
  result = train(features, nothing_learned(2), gamma=2, tau=1)
  assert result.learned.tolist() == [[True, False]]
  assert result.start_gradient.tolist() == [[True] * 4]
  assert result.end_gradient.tolist() == [[False, False, False, True]]
  # tau=2: learning f0 silences nobody, f1 still counts 3 and is learned; then only
  # e0, e1 hold 2 learned features, e2 and e3 can never reach tau: memorised.
  result = train(features, nothing_learned(2), gamma=2, tau=2)
  assert result.learned.tolist() == [[True, True]]
  assert result.end_gradient.tolist() == [[False, False, True, True]]


def test_examples_already_at_tau_have_no_gradient_from_the_start():
  features = one_row([[0, 1], [0, 1], [0], [1]], num_features=2)
  result = train(features, np.array([[True, False]]), gamma=2, tau=1)
  assert result.start_gradient.tolist() == [[False, False, False, True]]
  assert result.learned.tolist() == [[True, False]]  # f1 has 1 occurrence with gradient


def test_window_restricts_training_to_those_examples():
  features = one_row([[0], [0], [1], [1], [1]], num_features=2)
  assert train(features, nothing_learned(2), gamma=2, tau=1, start=0, stop=3).learned.tolist() \
      == [[True, False]]
  assert train(features, nothing_learned(2), gamma=2, tau=1, start=2).learned.tolist() \
      == [[False, True]]


# Three chunks of two examples; gamma=2 and tau=1, so any feature seen twice is learned.
#   chunk 0: {f0}, {f1}   chunk 1: {f0}, {f1}   chunk 2: {f0}, {f1}
# Every chunk alone has each feature once: warm, which never looks at its
# memorised examples again, learns nothing; random and ideal learn both at chunk 1.
THREE_CHUNKS = one_row([[0], [1], [0], [1], [0], [1]], num_features=2)
HAND_HISTORY = {
    # method: (learned features per experiment, training time, memorised)
    'random': ([0, 2, 2], [2, 4, 6], [2, 0, 0]),
    'warm': ([0, 0, 0], [2, 2, 2], [2, 4, 6]),
    'ideal': ([0, 2, 2], [2, 4, 0], [2, 0, 0]),
}


@pytest.mark.parametrize('method', synthetic.METHODS)
def test_methods_on_hand_worked_chunks(method):
  history = run_method(method, THREE_CHUNKS, per_chunk=2, gamma=2, tau=1)
  learned, training_time, memorised = HAND_HISTORY[method]
  assert history.learned.sum(axis=2)[0].tolist() == learned
  assert history.training_time[0].tolist() == training_time
  assert history.memorised[0].tolist() == memorised


def test_expected_accuracy_by_hand():
  test = np.zeros((1, 2, 2, 2), bool)  # (seed, class, feature, example)
  test[0, 0, :, 0] = [1, 1]
  test[0, 0, :, 1] = [1, 0]
  test[0, 1, :, 0] = [1, 1]
  test[0, 1, :, 1] = [0, 1]
  learned = np.zeros((1, 2, 2, 2), bool)  # (seed, experiment, class, feature)
  learned[0, 1, 0] = [1, 1]
  learned[0, 1, 1] = [0, 1]
  # Nothing learned: every example is a coin flip over 2 classes.
  assert synthetic.expected_accuracy(test, learned, tau=1)[0].tolist() == [0.5, 1.0]
  # tau=2: only class 0's first example is recognised: 1/4 + 3/4 * 1/2.
  assert synthetic.expected_accuracy(test, learned, tau=2)[0].tolist() == [0.5, 0.625]


# ----------------------------------------------------------------------------
# Invariants on random data.


def reference_train(by_feature, learned, gamma, tau):
  """The rule transcribed literally, one row, recounting everything each step."""
  learned = learned.copy()
  while True:
    has_gradient = (by_feature & learned[:, None]).sum(axis=0) < tau
    counts = np.where(learned, -1, (by_feature & has_gradient).sum(axis=1))
    best = int(np.argmax(counts))
    if counts[best] < gamma:
      return learned, has_gradient
    learned[best] = True


@pytest.mark.parametrize('gamma,tau', [(5, 1), (8, 2), (10, 3), (3, 4)])
def test_batched_incremental_train_matches_literal_rule(gamma, tau):
  rng = np.random.default_rng(gamma * 10 + tau)
  probs = rng.uniform(0, 0.4, size=(6, 12, 1))
  by_feature = rng.random((6, 12, 150)) < probs
  learned = rng.random((6, 12)) < 0.15
  result = train(as_features(by_feature), learned, gamma, tau, start=20, stop=140)
  for row in range(6):
    want_learned, want_gradient = reference_train(by_feature[row, :, 20:140], learned[row],
                                                  gamma, tau)
    np.testing.assert_array_equal(result.learned[row], want_learned)
    np.testing.assert_array_equal(result.end_gradient[row], want_gradient)


SMALL = SyntheticParams(num_examples=200, num_experiments=8, num_features=20, gamma=20,
                        tau=3, seeds=(3, 4), num_test=400)


@pytest.fixture(scope='module')
def small_run():
  return synthetic.simulate(SMALL)


def small_features():
  data = [synthetic.make_data(seed, SMALL) for seed in SMALL.seeds]
  by_feature = np.stack([d.train_features for d in data])
  return as_features(by_feature.reshape(-1, *by_feature.shape[2:]))


def test_random_at_experiment_j_equals_fresh_run_on_first_j_chunks():
  features, per_chunk = small_features(), SMALL.num_examples // SMALL.num_classes
  history = run_method('random', features, per_chunk, SMALL.gamma, SMALL.tau)
  for j in range(SMALL.num_experiments):
    fresh = train(features, np.zeros_like(history.learned[:, 0]), SMALL.gamma, SMALL.tau,
                  stop=(j + 1) * per_chunk)
    np.testing.assert_array_equal(history.learned[:, j], fresh.learned)
  # And a whole run with fewer experiments sees the same first chunks.
  shorter = synthetic.simulate(dataclasses.replace(SMALL, num_experiments=3))
  full = synthetic.simulate(SMALL)
  for method in synthetic.METHODS:
    for metric in synthetic.METRICS:
      np.testing.assert_array_equal(shorter[method][metric], full[method][metric][:, :3])


def test_warm_only_trains_on_the_new_chunk_from_its_previous_features():
  features, per_chunk = small_features(), SMALL.num_examples // SMALL.num_classes
  warm = run_method('warm', features, per_chunk, SMALL.gamma, SMALL.tau)
  previous = np.zeros_like(warm.learned[:, 0])
  for j in range(SMALL.num_experiments):
    step = train(features, previous, SMALL.gamma, SMALL.tau, j * per_chunk, (j + 1) * per_chunk)
    np.testing.assert_array_equal(warm.learned[:, j], step.learned)
    previous = step.learned


def test_metric_invariants(small_run):
  per_experiment = SMALL.num_examples
  seen = per_experiment * np.arange(1, SMALL.num_experiments + 1)
  for method in ('warm', 'ideal'):  # both keep what they learned
    assert (np.diff(small_run[method]['learned_features'], axis=1) >= 0).all()
  np.testing.assert_array_equal(small_run['random']['training_time'],
                                np.broadcast_to(seen, (len(SMALL.seeds), len(seen))))
  assert (small_run['warm']['training_time'] <= per_experiment).all()
  assert (small_run['ideal']['training_time'] <= small_run['random']['training_time']).all()
  assert (np.diff(small_run['warm']['memorised'], axis=1) >= 0).all()
  for method in synthetic.METHODS:
    accuracy = small_run[method]['test_accuracy']
    assert ((accuracy >= 1 / SMALL.num_classes) & (accuracy <= 1)).all()
    assert (small_run[method]['memorised'] <= seen).all()


def test_same_seed_same_numbers_other_seed_other_numbers(small_run):
  again = synthetic.simulate(SMALL)
  other = synthetic.simulate(dataclasses.replace(SMALL, seeds=(5, 6)))
  for method in synthetic.METHODS:
    for metric in synthetic.METRICS:
      np.testing.assert_array_equal(again[method][metric], small_run[method][metric])
  assert not np.array_equal(other['random']['test_accuracy'], small_run['random']['test_accuracy'])


# ----------------------------------------------------------------------------
# Config validation and the default run.


def test_default_config_parses_to_the_paper_setting():
  assert synthetic_launch.params_from_config(get_config()) == SyntheticParams()


@pytest.mark.parametrize('field,value', [
    ('num_examples', 0), ('num_examples', 1001), ('num_experiments', -1), ('num_classes', 1),
    ('num_features', 2.5), ('gamma', 0), ('tau', 51), ('tau', True), ('prob_low', 0.3),
    ('prob_high', 1.5), ('num_test', 9999), ('seeds', ''), ('seeds', '0,x'), ('seeds', '1,1'),
])
def test_bad_config_fields_raise_one_line_user_error(field, value, tmp_path):
  config = ml_collections.ConfigDict({**get_config().to_dict(), field: value})  # bypass type locks
  with pytest.raises(UserError, match=f'config.{field}') as error:
    synthetic_launch.run(config, str(tmp_path))
  assert '\n' not in str(error.value)
  assert not (tmp_path / 'synthetic').exists()


@pytest.mark.slow
def test_default_run_reproduces_the_paper_ordering(tmp_path):
  """Full default: warm learns fewer features and generalises worse; ideal matches
  random's accuracy at a fraction of its training time."""
  results = synthetic_launch.run(get_config(), str(tmp_path))
  with open(tmp_path / 'synthetic' / 'results.json') as f:
    saved = json.load(f)
  assert (tmp_path / 'synthetic' / 'synthetic.png').stat().st_size > 0
  assert saved['summary'] == results['summary']
  assert saved['config']['experiment'] == 'synthetic'
  methods = saved['methods']
  for method in synthetic.METHODS:
    for metric in synthetic.METRICS:
      assert np.shape(methods[method][metric]['per_seed']) == (10, 50)
      assert len(methods[method][metric]['mean']) == len(methods[method][metric]['std']) == 50

  last = {m: {k: v['mean'][-1] for k, v in methods[m].items()} for m in synthetic.METHODS}
  random_accuracy_std = methods['random']['test_accuracy']['std'][-1]
  assert last['warm']['test_accuracy'] < last['random']['test_accuracy']
  assert last['warm']['learned_features'] < last['random']['learned_features']
  assert abs(last['ideal']['test_accuracy'] - last['random']['test_accuracy']) \
      <= random_accuracy_std
  total_time = {m: sum(methods[m]['training_time']['mean']) for m in synthetic.METHODS}
  assert total_time['ideal'] < total_time['random']
  assert total_time['warm'] < total_time['ideal']
