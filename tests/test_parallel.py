"""Data parallelism: 4 (forced CPU) devices give one device's numbers.

XLA_FLAGS must be set before JAX starts, so the runs happen in a child
process that prints its results as JSON.
"""
import json
import os
import subprocess
import sys
import textwrap

import pytest

from tests import helpers


CHILD = textwrap.dedent('''
    import json, os, sys
    import jax
    jax.config.update('jax_disable_most_optimizations', True)
    import jax.numpy as jnp
    from configs.digits import get_config
    from dash_jax import parallel, train
    from dash_jax.launch import runs

    def tiny(devices, vmap_seeds):
      c = get_config()
      c.data_dir, c.train_type, c.optimizer = {tfds!r}, 'dash', 'sam'
      c.seeds, c.num_chunks, c.max_epoch, c.width = '0,1', 3, 2, 32
      c.devices, c.vmap_seeds, c.progress, c.tensorboard = devices, vmap_seeds, False, False
      return c

    out = {{'devices': jax.device_count()}}
    for devices, vmap_seeds in ((1, False), (4, False), (4, True)):
      name = f'd{{devices}}-v{{int(vmap_seeds)}}'
      res = runs.run(tiny(devices, vmap_seeds), os.path.join({work!r}, name),
                         log=lambda *a: None)
      out[name] = {{k: v['experiments'] for k, v in res.items()}}

    # The compiled epoch on the 4-device mesh really splits the batch: each
    # device sees 128 / 4 examples and the gradients are all-reduced.
    mesh = parallel.make_mesh(4)
    with parallel.use_mesh(mesh):
      import flax.linen as nn, optax
      from dash_jax import models, optim
      model = models.MLP(10, width=32)
      state = train.create_state(model, optim.sgd(0.01), jax.random.PRNGKey(0), (8, 8, 1), False)
      data = {{'train_x': jnp.zeros((256, 8, 8, 1), jnp.uint8),
               'train_y': jnp.zeros((256,), jnp.int32),
               'mean': jnp.zeros((1,)), 'std': jnp.ones((1,))}}
      group = jax.tree.map(lambda x: x[None], state)  # a plain run: a group of one
      data['train_y'] = data['train_y'][None]
      buffer_idx = jnp.arange(256, dtype=jnp.int32)[None]
      hlo = train.device_epochs.lower(
          group, jax.random.PRNGKey(0)[None], jnp.ones((1,), bool),
          train.EpochSource(data, buffer_idx, 256, 2), train.CallBounds(0, 1, 0.5),
          layout=train.Layout(train.StepConfig(), 128)).compile().as_text()
    out['all_reduce'] = 'all-reduce' in hlo
    out['per_device_batch'] = 'f32[32,64]' in hlo
    print('RESULT ' + json.dumps(out))
''')


@pytest.mark.slow
def test_four_devices_match_one(tfds_dir, tmp_path):
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=4',
             JAX_PLATFORMS='cpu', TF_CPP_MIN_LOG_LEVEL='3')
  code = CHILD.format(root=helpers.ROOT, tfds=tfds_dir, work=str(tmp_path))
  proc = subprocess.run([sys.executable, '-c', code], env=env, cwd=helpers.ROOT, capture_output=True,
                        text=True, timeout=600, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  line = [l for l in proc.stdout.splitlines() if l.startswith('RESULT ')][-1]
  out = json.loads(line[len('RESULT '):])
  assert out['devices'] == 4
  assert out['all_reduce'] and out['per_device_batch']
  one = out['d1-v0']
  for other in ('d4-v0', 'd4-v1'):  # sharded; sharded with seeds vmapped
    assert out[other].keys() == one.keys() == {'dash-sam-seed0', 'dash-sam-seed1'}
    for run, exps in one.items():
      for a, b in zip(exps, out[other][run], strict=True):
        assert a['steps'] == b['steps'] and a['epochs'] == b['epochs']
        for k in ('test_acc', 'test_loss', 'train_acc', 'train_loss'):
          assert b[k] == pytest.approx(a[k], rel=1e-4, abs=1e-5), (other, run, k)
  # and the seeds really differ from each other (the comparison is not vacuous)
  assert one['dash-sam-seed0'][-1]['test_loss'] != one['dash-sam-seed1'][-1]['test_loss']


def test_too_many_devices_is_a_one_line_error():
  from dash_jax import parallel
  from dash_jax.errors import UserError
  with pytest.raises(UserError, match='only 1 cpu device'):
    parallel.make_mesh(2)


@pytest.mark.slow
def test_two_processes_share_the_runs(tfds_dir, tmp_path):
  results = helpers.two_hosts("c.train_type, c.seeds = 'warm,dash', '0,1'", tfds_dir, tmp_path)
  ran = [r['ran'] for r in results]
  assert sorted(ran[0] + ran[1]) == sorted(f'{t}-sgd-seed{s}' for t in ('warm', 'dash')
                                           for s in (0, 1))
  assert ran[0] and ran[1] and not set(ran[0]) & set(ran[1])  # each run once
  assert len(results[0]['returned']) == 4  # the main process reports them all
  rows = json.loads((tmp_path / 'summary.json').read_text())['rows']
  assert sorted(r['train_type'] for r in rows) == ['dash', 'warm']
  assert all(r['seeds'] == [0, 1] for r in rows)


def test_bad_process_id_is_named():
  from configs.digits import get_config
  from dash_jax.launch import config as config_lib
  from dash_jax.errors import UserError
  c = get_config()
  c.coordinator, c.num_processes, c.process_id = 'localhost:1234', 2, 2
  with pytest.raises(UserError, match=r'config.process_id=2 is outside \[0, 2\)'):
    config_lib.validate(c)
