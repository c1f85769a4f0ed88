"""bench/compare_types.py: the paired table of every training type."""
import json

import pytest


def _write(workdir, train_type, seed, accs, steps):
  folder = workdir / f'{train_type}-sgd-seed{seed}'
  folder.mkdir(parents=True)
  res = {'config': {'train_type': train_type, 'optimizer': 'sgd', 'seeds': str(seed)},
         'experiments': [{'test_acc': a, 'steps': s} for a, s in zip(accs, steps)]}
  (folder / 'results.json').write_text(json.dumps(res))


def test_table_pairs_by_seed_and_orders_by_registry(tmp_path):
  from bench import compare_types
  a, b = tmp_path / 'a', tmp_path / 'b'
  for seed, (d, r) in enumerate([(0.70, 0.72), (0.80, 0.78)]):
    _write(a, 'dash', seed, [0.5, d], [10, 20 + 2 * seed])
    _write(b, 'redo', seed, [0.5, r], [10, 30])
  _write(b, 'cold', 0, [0.5, 0.6], [10, 40])
  by_type = compare_types.load([str(a), str(b)])
  assert list(by_type) == ['cold', 'dash', 'redo']
  lines = compare_types.table(by_type).splitlines()
  redo = next(line for line in lines if line.startswith('| redo |'))
  # paired: +2 and -2 points: mean 0, std 2; ahead on 1 of 2 seeds
  assert '| 0.00 (2.00) | 1/2 |' in redo
  assert '| 75.00 (3.00) |' in redo
  dash = next(line for line in lines if line.startswith('| dash |'))
  assert dash.endswith('| 75.00 (5.00) | 21 (1) | - | - |')
  with pytest.raises(KeyError):
    compare_types.table(by_type, reference='nothing')
