"""The wheel: built from this checkout, installed into a fresh venv (no
system site packages) with an empty HOME, its `dash-jax` command launches
the default from another folder without TensorFlow or tfds.

The venv gets the wheel alone (--no-deps); the packages it depends on are
this environment's, made visible through a .pth file (plain paths: none of
this environment's own .pth hooks, such as an editable dash_jax, run there),
with TensorFlow and tfds blocked as if not installed. Whatever interpreter
or venv runs the tests, the venv sees the same. That the wheel's declared
dependencies are complete, `pip install .` into an empty venv, is .ci/run's
last step (it needs the network)."""
import os
import shutil
import site
import subprocess
import sys
import sysconfig

import pytest

from tests import helpers



def _run(args, **kw):
  proc = subprocess.run(args, capture_output=True, text=True, timeout=900, check=False, **kw)
  assert proc.returncode == 0, f'{args}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}'
  return proc


def _outer_site_dirs() -> list:
  """This environment's package folders (not the checkout, not the stdlib)."""
  paths = [sysconfig.get_paths()['purelib'], sysconfig.get_paths()['platlib'],
           *site.getsitepackages()]
  if site.ENABLE_USER_SITE:
    paths.append(site.getusersitepackages())
  out = []
  for p in paths:
    if os.path.isdir(p) and not os.path.abspath(p).startswith(helpers.ROOT) and p not in out:
      out.append(p)
  return out


def _build_wheel(tmp_path):
  src = tmp_path / 'src'  # a copy: building writes build/ and *.egg-info next to the sources
  src.mkdir()
  ignore = shutil.ignore_patterns('__pycache__', '*.pyc')
  for name in ('pyproject.toml', 'README.md'):
    shutil.copy(os.path.join(helpers.ROOT, name), src)
  for name in ('dash_jax', 'configs'):
    shutil.copytree(os.path.join(helpers.ROOT, name), src / name, ignore=ignore)
  wheels = tmp_path / 'wheels'
  _run([sys.executable, '-m', 'pip', 'wheel', '-q', '--no-deps', '--no-build-isolation',
        '-w', str(wheels), str(src)])
  (wheel,) = wheels.glob('dash_jax-*.whl')
  return wheel


def _venv_with(wheel, venv):
  """A fresh venv holding the wheel; this environment's packages visible,
  TensorFlow and tfds not."""
  _run([sys.executable, '-m', 'venv', '--without-pip', str(venv)])
  python = venv / 'bin' / 'python'
  site = _run([str(python), '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])'],
              env={}).stdout.strip()
  _run([sys.executable, '-m', 'pip', '--python', str(python), 'install', '-q', '--no-deps',
        '--no-index', str(wheel)])
  with open(os.path.join(site, '_dash_jax_test_block.py'), 'w') as f:
    f.write(helpers.BLOCKER)
  with open(os.path.join(site, '_dash_jax_test_env.pth'), 'w') as f:
    f.write(''.join(p + '\n' for p in _outer_site_dirs()) + 'import _dash_jax_test_block\n')
  return python


@pytest.mark.slow
def test_wheel_runs_the_default_without_tensorflow_from_anywhere(tmp_path):
  venv = tmp_path / 'venv'
  python = _venv_with(_build_wheel(tmp_path), venv)
  home, elsewhere = tmp_path / 'home', tmp_path / 'elsewhere'
  home.mkdir()
  elsewhere.mkdir()  # no checkout here: what runs is the installed wheel
  env = {k: v for k, v in os.environ.items()
         if k not in ('PYTHONPATH', 'TFDS_DATA_DIR', 'VIRTUAL_ENV')}
  env.update(HOME=str(home), JAX_PLATFORMS='cpu', JAX_DISABLE_MOST_OPTIMIZATIONS='true')
  where = _run([str(python), '-c', 'import configs, dash_jax, importlib.util as u; '
                'print(dash_jax.__file__); print(configs.__file__); '
                'print(u.find_spec("tensorflow"), u.find_spec("tensorflow_datasets"))'],
               cwd=elsewhere, env=env)
  files, blocked = where.stdout.splitlines()[:2], where.stdout.splitlines()[2]
  assert all(line.startswith(str(venv)) for line in files), where.stdout
  assert blocked == 'None None'  # as on a machine without them

  helped = _run([str(venv / 'bin' / 'dash-jax'), '--help'], cwd=elsewhere, env=env)
  assert '  --config.learning_rate=0.05 ' in helped.stdout
  assert str(venv) in helped.stdout  # the installed configs/default.py's fields

  out = _run([str(venv / 'bin' / 'dash-jax'), '--config', 'default', '--workdir', 'W',
              '--config.num_chunks=3', '--config.seeds=0'], cwd=elsewhere, env=env)
  assert 'run 1/4: cold-sgd-seed0' in out.stdout
  assert (elsewhere / 'W' / 'report.md').is_file()
  assert (elsewhere / 'W' / 'figure_mnist1d_sgd.png').is_file()
  kept = home / 'tensorflow_datasets' / 'dash_jax' / 'dash_mnist1d-1.0.0'
  assert sorted(os.listdir(kept)) == ['dash_jax-test.npz', 'dash_jax-train.npz']
