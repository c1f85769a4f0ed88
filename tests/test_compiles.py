"""Growing the training set compiles nothing new after the first experiments."""
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
