"""The wheel: built from this checkout, installed into a fresh environment,
its `dash-jax` command launches a shipped config from any folder."""
import json
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(args, **kw):
  proc = subprocess.run(args, capture_output=True, text=True, timeout=900, check=False, **kw)
  assert proc.returncode == 0, f'{args}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}'
  return proc


@pytest.mark.slow
def test_wheel_installs_a_dash_jax_command(tfds_dir, tmp_path):
  src = tmp_path / 'src'  # a copy: building writes build/ and *.egg-info next to the sources
  src.mkdir()
  ignore = shutil.ignore_patterns('__pycache__', '*.pyc')
  for name in ('pyproject.toml', 'README.md'):
    shutil.copy(os.path.join(ROOT, name), src)
  for name in ('dash_jax', 'configs'):
    shutil.copytree(os.path.join(ROOT, name), src / name, ignore=ignore)
  wheels = tmp_path / 'wheels'
  _run([sys.executable, '-m', 'pip', 'wheel', '-q', '--no-deps', '--no-build-isolation',
        '-w', str(wheels), str(src)])
  (wheel,) = wheels.glob('dash_jax-*.whl')
  venv = tmp_path / 'venv'  # this interpreter's packages, the wheel's dash_jax and configs
  _run([sys.executable, '-m', 'venv', '--without-pip', '--system-site-packages', str(venv)])
  python = venv / 'bin' / 'python'
  _run([str(python), '-m', 'pip', 'install', '-q', '--no-deps', '--no-index',
        '--ignore-installed', str(wheel)])

  elsewhere = tmp_path / 'elsewhere'  # no checkout here: what runs is the installed wheel
  elsewhere.mkdir()
  env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
  env.update(JAX_PLATFORMS='cpu', JAX_DISABLE_MOST_OPTIMIZATIONS='true')
  where = _run([str(python), '-c', 'import configs, dash_jax; '
                'print(dash_jax.__file__); print(configs.__file__)'], cwd=elsewhere, env=env)
  assert all(line.startswith(str(venv)) for line in where.stdout.split()), where.stdout

  out = _run([str(venv / 'bin' / 'dash-jax'), '--config', 'default', '--workdir', 'W',
              '--config.num_chunks=2', '--config.seeds=0', '--config.train_type=cold',
              '--config.dataset=digits', '--config.runs_per_device=1',
              '--config.width=16', '--config.max_epoch=2', f'--config.data_dir={tfds_dir}',
              '--config.progress=False', '--config.compile_cache_dir='],
             cwd=elsewhere, env=env)
  assert 'run 1/1: cold-sgd-seed0' in out.stdout
  with open(elsewhere / 'W' / 'cold-sgd-seed0' / 'results.json') as f:
    res = json.load(f)
  assert len(res['experiments']) == 2
  assert res['config']['width'] == 16 and res['config']['dataset'] == 'digits'
