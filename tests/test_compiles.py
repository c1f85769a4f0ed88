"""Growing the training set compiles nothing new after the first experiments."""
import os

import jax
import jax.numpy as jnp
import pytest

from dash_jax import compiles
from dash_jax.launch import runs


def test_counter_counts_new_shapes_only():
  counter = compiles.CompileCounter()
  f = jax.jit(lambda x: x * 3 + 1)
  f(jnp.ones(7))
  assert counter.since_last().count >= 1
  f(jnp.ones(7))
  assert counter.since_last().count == 0
  f(jnp.ones(9))
  assert counter.since_last().count >= 1


@pytest.mark.slow
def test_later_experiments_compile_nothing(tiny_config, tmp_path):
  tiny_config.train_type = 'dash,cold'
  tiny_config.num_chunks = 5
  tiny_config.max_epoch = 2
  tiny_config.progress = False
  res = runs.run(tiny_config, str(tmp_path), log=lambda *a: None)
  for run in ('dash-sgd-seed0', 'cold-sgd-seed0'):
    exps = res[run]['experiments']
    assert [e['num_train'] for e in exps] == [251 * j for j in range(1, 6)]
    assert all(e['compiles'] == 0 for e in exps[2:]), [e['compiles'] for e in exps]
    assert res[run]['summary']['compiles_total'] == sum(e['compiles'] for e in exps)
  assert res['dash-sgd-seed0']['experiments'][0]['compiles'] > 0  # the first compiles


def test_unwritable_cache_dir_is_a_one_line_error(tmp_path):
  import pytest
  from dash_jax.errors import UserError
  blocker = tmp_path / 'file'
  blocker.write_text('')
  with pytest.raises(UserError, match='cannot create compile_cache_dir') as e:
    compiles.use_disk_cache(str(blocker / 'cache'), 1.0)
  assert '\n' not in str(e.value)


@pytest.mark.slow
def test_the_disk_cache_writes_entries_with_its_size_limit(tmp_path):
  """compile_cache_dir works where the package is installed: JAX needs
  filelock (a dependency) to honour compile_cache_gb, else every read of
  the cache fails with a warning and nothing is reused."""
  from tests import helpers
  code = ('import jax, jax.numpy as jnp; from dash_jax import compiles; '
          f'compiles.use_disk_cache({str(tmp_path / "xla")!r}, 1.0); '
          'print(jax.jit(lambda x: x * 2 + 1)(jnp.ones(3)))')
  proc = helpers.python(code, JAX_DISABLE_MOST_OPTIMIZATIONS='false')
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert 'filelock' not in proc.stderr, proc.stderr[-2000:]
  assert os.listdir(tmp_path / 'xla')  # the compiled program is in the cache
