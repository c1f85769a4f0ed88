"""The provenance block: its fields, environment comparison, summary.json."""
import calendar
import copy
import importlib.metadata
import json
import os
import shlex
import subprocess
import sys
import time

import jax
import pytest

import dash_jax
from dash_jax import provenance
from dash_jax.launch import tables


def _iso(text):
  """Seconds since the epoch of an ISO 8601 UTC time ('...Z')."""
  return calendar.timegm(time.strptime(text, '%Y-%m-%dT%H:%M:%SZ'))


@pytest.fixture(scope='module')
def block():
  return provenance.collect('bfloat16',
                            argv=['launch.py', '--config', 'configs/a b.py'])


def test_block_fields_and_types(block):
  assert block['version'] == (provenance._dist_version('dash-jax') or dash_jax.__version__)
  libs = block['libraries']
  assert libs['python'] == '.'.join(map(str, sys.version_info[:3]))
  assert libs['jax'] == jax.__version__
  for name in provenance.LIBRARIES:
    assert libs[name] == importlib.metadata.version(name) and libs[name]
  assert block['backend'] == 'cpu' == jax.default_backend()
  assert block['device_kind'] == jax.devices()[0].device_kind
  assert isinstance(block['device_count'], int) and block['device_count'] >= 1
  assert isinstance(block['processor'], str) and block['processor']
  assert block['precision'] == 'bfloat16'
  assert isinstance(block['host'], str) and block['host']
  assert shlex.split(block['command']) == ['launch.py', '--config', 'configs/a b.py']
  assert abs(time.time() - _iso(block['start_time'])) < 3600
  assert block['end_time'] is None
  json.dumps(block)  # goes into results.json as is


def test_defaults_and_end_time():
  b = provenance.collect()
  assert b['precision'] == 'float32'
  assert b['command'] == shlex.join(sys.argv)
  provenance.stamp_end(b)
  assert _iso(b['end_time']) >= _iso(b['start_time'])


def test_git_commit_of_this_checkout(block):
  try:
    head = subprocess.run(['git', 'rev-parse', 'HEAD'], capture_output=True, text=True,
                          check=True, cwd=provenance._package_dir()).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    pytest.skip('not a git checkout')
  assert block['git']['commit'] == head
  assert isinstance(block['git']['dirty'], bool)


def test_no_git_is_null(monkeypatch):
  def missing(*args, **kwargs):
    raise FileNotFoundError('git')
  monkeypatch.setattr(provenance.subprocess, 'run', missing)
  assert provenance.git_state() is None
  assert provenance.collect()['git'] is None


def test_collect_imports_no_tensorflow():
  code = ('import sys; from dash_jax import provenance; provenance.collect(); '
          'print(sorted(m for m in ("tensorflow", "flax", "optax") if m in sys.modules))')
  out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                       cwd=os.path.dirname(provenance._package_dir()), check=True,
                       env={'JAX_PLATFORMS': 'cpu', 'PATH': '/usr/bin:/bin'})
  assert out.stdout.strip() == '[]'


def test_environment_differences(block):
  assert provenance.environment_differences(block, copy.deepcopy(block)) == []
  other = copy.deepcopy(block)
  other['libraries']['jax'] = '0.4.30'
  other['backend'], other['device_kind'] = 'gpu', 'NVIDIA H200'
  other['host'], other['start_time'] = 'elsewhere', '2000-01-01T00:00:00Z'
  diffs = provenance.environment_differences(other, block)
  assert diffs == [f"jax 0.4.30 -> {block['libraries']['jax']}",
                   'backend gpu -> cpu', f"device kind NVIDIA H200 -> {block['device_kind']}"]
  del other['libraries']['flax']
  assert f"flax (absent) -> {block['libraries']['flax']}" in (
      provenance.environment_differences(other, block))
  assert provenance.environment_differences(None, block) == []


def test_environment_key(block):
  assert provenance.environment_key(block) == (
      f"jax {jax.__version__}, {block['device_kind']} x{block['device_count']} "
      f"({block['processor']}), bfloat16")
  assert provenance.environment_key(None) == 'environment not recorded'


def _result(tt, seed, accs, prov=None):
  exps = [{'experiment': j, 'test_acc': a, 'steps': 10 * j} for j, a in enumerate(accs, 1)]
  res = {'config': {'dataset': 'digits', 'train_type': tt, 'optimizer': 'sgd',
                    'seed': seed},
         'experiments': exps, 'summary': {}}
  if prov is not None:
    res['provenance'] = prov
  return res


def test_summary_json_carries_environments(block, tmp_path):
  later = dict(block, start_time='2001-01-01T00:00:00Z', command='again')
  gpu = dict(block, device_kind='NVIDIA H200', backend='gpu')
  results = [_result('cold', 0, [.5, .7], block), _result('cold', 1, [.6, .9], later),
             _result('dash', 0, [.5, .8], gpu), _result('dash', 1, [.5, .8])]
  text = tables.write(str(tmp_path), results)
  saved = json.loads((tmp_path / 'summary.json').read_text())
  # The same environment at another time is one environment.
  assert saved['environments'] == [block, gpu]
  cold, dash = saved['rows']
  assert cold['seeds'] == [0, 1] and cold['environments'] == [
      provenance.environment_key(block)]
  assert cold['test_acc_last'] == {'mean': pytest.approx(.8), 'std': pytest.approx(.1)}
  assert cold['steps_total'] == {'mean': 30.0, 'std': 0.0}
  assert dash['environments'] == [provenance.environment_key(gpu),
                                  'environment not recorded']
  assert 'rows of this table come from 3 environments' in text
  assert (tmp_path / 'summary.md').read_text() == text
  # A launch's own blocks, passed explicitly, are stored as given.
  tables.write(str(tmp_path), results, provenance=[block])
  assert json.loads((tmp_path / 'summary.json').read_text())['environments'] == [block]


@pytest.mark.slow
def test_a_run_records_its_provenance_and_warns_on_a_resume_elsewhere(
    tiny_config, tmp_path, monkeypatch):
  tiny_config.progress = False
  res = dash_jax.run(tiny_config, str(tmp_path), log=lambda *a: None)
  (run,) = res.values()
  block = run['provenance']
  assert block['backend'] == 'cpu' and block['device_count'] >= 1
  assert block['libraries']['jax'] == jax.__version__
  assert block['precision'] == tiny_config.get('precision', 'float32')
  assert block['start_time'] <= block['end_time']
  with open(tmp_path / 'warm-sgd-seed0' / 'results.json') as f:
    assert json.load(f)['provenance'] == block
  with open(tmp_path / 'summary.json') as f:
    assert json.load(f)['environments'][0]['libraries'] == block['libraries']
  assert 'Environment: ' + provenance.environment_key(block) in (
      tmp_path / 'report.md').read_text()

  # The same run resumed (from its last checkpoint) under another jax version.
  os.remove(tmp_path / 'warm-sgd-seed0' / 'results.json')
  real = provenance.libraries
  monkeypatch.setattr(provenance, 'libraries', lambda: {**real(), 'jax': '0.0.1'})
  lines = []
  again = dash_jax.run(tiny_config, str(tmp_path), log=lines.append)
  changed = [l for l in lines if 'resumed in another environment' in l]
  assert len(changed) == 1 and f'jax {jax.__version__} -> 0.0.1' in changed[0]
  (rerun,) = again.values()
  assert rerun['provenance']['resumed_from']['libraries']['jax'] == jax.__version__
  assert rerun['experiments'] == run['experiments']
