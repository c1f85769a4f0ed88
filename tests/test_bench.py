"""bench/bench.py runs: its JAX side always (CI has no torch), the whole
smoke mode when torch is installed. No timing assertions."""
import importlib.util

import numpy as np
import pytest



def _bench():
  from bench import bench
  return bench


def test_jax_mlp_step_times_without_torch():
  seconds = _bench().time_jax_mlp_step(batch_size=8, width=16)
  assert np.isfinite(seconds) and seconds > 0


@pytest.mark.slow
def test_jax_side_units_run():
  """Every JAX unit the benchmark times, at tiny shapes."""
  bench = _bench()
  mlp = bench.JaxBench('mlp', (8, 8, 1), 20, 8, width=16)
  for metrics in (mlp.scan_epoch(), mlp.loop_epoch(), mlp.step()):
    assert metrics.shape == (2,) and np.all(np.isfinite(metrics))
  rows = mlp.device_epochs(3)[:3]  # three epochs, one call
  assert np.all(np.isfinite(rows)) and np.all(rows[:, 0] <= 1)
  net = bench.JaxBench('resnet18', (8, 8, 3), 8, 4, sam=True)
  assert np.all(np.isfinite(net.step()))
  direction = net.direction(chunk_size=4)
  assert all(np.all(np.isfinite(np.asarray(d))) for d in
             __import__('jax').tree.leaves(direction))


@pytest.mark.skipif(importlib.util.find_spec('torch') is None,
                    reason='torch not installed (requirements-bench.txt)')
def test_smoke_mode_writes_table(tmp_path):
  out = tmp_path / 'BENCHMARKS.md'
  table = _bench().main(['--quick', '--only', 'abcd', '--out', str(out)])
  text = out.read_text()
  assert '| benchmark | jax (median) | torch (median) |' in text
  assert len(table.rows) == 7 and 'Machine:' in text
