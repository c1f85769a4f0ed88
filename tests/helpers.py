"""What several test files share: the repo root, a tiny config (for fixtures
and launches alike), results without timing, processes started the same way,
and small builders of data and states. One copy each, so a test file never
imports another. Imports of dash_jax and jax stay inside the functions, so
importing this module (conftest.py does, right after setting JAX's
environment) loads nothing heavy."""
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# ----------------------------------------------------------------- the tiny config

# configs/digits.py shrunk to seconds: one warm seed, few chunks and epochs.
TINY = dict(
    train_type='warm', seeds='0', num_chunks=3, max_epoch=3, width=32,
    compile_cache_dir='',  # compile counts must not depend on earlier sessions
    checkpoint_min_interval_s=0.0,  # every save happens: resume tests count on them
)


def tiny_config(data_dir, **overrides):
  """configs/digits.py with TINY and `overrides` set, reading `data_dir`."""
  from configs.digits import get_config
  config = get_config()
  config.update({'data_dir': str(data_dir), **TINY, **overrides})
  return config


# TINY smaller still, where a launch's start-up is what a test waits for.
SMALLER = dict(num_chunks=2, max_epoch=2, width=16)


def config_flags(**fields):
  """`--config.FIELD=VALUE` flags, as a launch takes them."""
  return [f'--config.{k}={v}' for k, v in fields.items()]


def tiny_flags(**overrides):
  """TINY (with `overrides`) as launch flags: the fixture's config, launched."""
  return config_flags(**{**TINY, **overrides})


# ----------------------------------------------------------------- results without timing


def numbers(res, drop=()):
  """A run's experiments less how the run went (wall time, compiles, ...), and
  less `drop`: what must not change between two launches of one config."""
  from dash_jax.results import EXECUTION_RECORD_FIELDS
  skip = (*EXECUTION_RECORD_FIELDS, *drop)
  return [{k: v for k, v in e.items() if k not in skip} for e in res['experiments']]


def numbers_by_run(launched):
  """numbers() of each run a launch returned, by run name."""
  return {name: numbers(r) for name, r in launched.items()}


def read_results(run_dir):
  """A run folder's results.json."""
  with open(os.path.join(run_dir, 'results.json')) as f:
    return json.load(f)


def close(plain, vmapped):
  """Two numbers_by_run() equal up to float noise (seeds vmapped or not)."""
  import pytest
  assert plain.keys() == vmapped.keys()
  for run in plain:
    for a, b in zip(plain[run], vmapped[run], strict=True):
      assert (a['steps'], a['epochs'], a['num_train']) == (b['steps'], b['epochs'], b['num_train'])
      for k in ('test_acc', 'test_loss', 'train_acc', 'train_loss'):
        assert b[k] == pytest.approx(a[k], rel=1e-4, abs=1e-5), (run, a['experiment'], k)


# ----------------------------------------------------------------- processes

# A started process compiles as this one does: on CPU, few XLA passes.
CHILD_ENV = {'JAX_PLATFORMS': 'cpu', 'JAX_DISABLE_MOST_OPTIMIZATIONS': 'true'}


def child_env(**env):
  """This process's environment, with CHILD_ENV and `env` over it."""
  return {**os.environ, **CHILD_ENV, **env}


def python(code, timeout=300, **env):
  """`python -c CODE` in the repo root, run to its end (never raises on exit code)."""
  return subprocess.run([sys.executable, '-c', code], check=False, cwd=ROOT, env=child_env(**env),
                        capture_output=True, text=True, timeout=timeout)


def run_launch(*args, timeout=300, **env):
  """`python launch.py ARGS` in the repo root, run to its end (never raises on exit code)."""
  return subprocess.run([sys.executable, os.path.join(ROOT, 'launch.py'), *map(str, args)],
                        check=False, cwd=ROOT, env=child_env(**env), capture_output=True, text=True,
                        timeout=timeout)


def launch(workdir, *flags, config='configs/digits.py', prefix=(), new_session=False,
           stderr=subprocess.PIPE):
  """`python launch.py --config CONFIG --workdir WORKDIR FLAGS` started (under
  `prefix`, e.g. `timeout`), stdout piped; with new_session in its own
  session, so a group signal stays there."""
  args = [*prefix, sys.executable, os.path.join(ROOT, 'launch.py'),
          '--config', os.path.join(ROOT, config), '--workdir', str(workdir), *flags]
  return subprocess.Popen(args, cwd=ROOT, env=child_env(), stdout=subprocess.PIPE, stderr=stderr,
                          text=True, start_new_session=new_session)


def launch_tiny(workdir, data_dir, *flags, **kw):
  """launch() of TINY and SMALLER reading `data_dir`, `flags` after them (last wins)."""
  return launch(workdir, *tiny_flags(data_dir=data_dir, **SMALLER), *flags, **kw)


def wait_for(proc, text, deadline=300):
  """Lines of stdout up to and including the first one containing `text`."""
  seen, end = [], time.time() + deadline
  while time.time() < end:
    line = proc.stdout.readline()
    assert line, f'exited ({proc.wait()}) before {text!r}: {seen} {proc.stderr.read()}'
    seen.append(line)
    if text in line:
      return seen
  raise AssertionError(f'no {text!r} in time')


# Prepended to a child's code: every import finder acts as if the blocked
# packages were not installed (find_spec None, import ModuleNotFoundError).
BLOCKED = ('tensorflow', 'tensorflow_datasets', 'torch')
BLOCKER = f"""
import sys
class _Hide:
  def __init__(self, inner):
    self.inner = inner
  def find_spec(self, name, path=None, target=None):
    if name.split('.')[0] in {BLOCKED!r}:
      return None
    return self.inner.find_spec(name, path, target)
  def __getattr__(self, attr):
    return getattr(self.inner, attr)
sys.meta_path[:] = [_Hide(f) for f in sys.meta_path]
"""


# ----------------------------------------------------------------- a user's data


def user_config(dataset, data_dir='', **fields):
  """configs/digits.py reading `dataset` (a name or a file) from `data_dir`."""
  from configs.digits import get_config
  config = get_config()
  config.dataset, config.data_dir = dataset, str(data_dir)
  for k, v in fields.items():
    config[k] = v
  return config


def features(n, d=6, k=3, seed=0):
  """Float features (n, d) whose first k columns give the class: separable."""
  import numpy as np
  rng = np.random.default_rng(seed)
  y = np.arange(n) % k
  x = rng.normal(size=(n, d)).astype(np.float64)
  x[np.arange(n), y] += 4.0
  return x, y


def write_npz(path, **arrays):
  """An npz of separable features; `arrays` replace (None: drop) its arrays."""
  import numpy as np
  x, y = features(60)
  xt, yt = features(30, seed=1)
  base = dict(x_train=x, y_train=y, x_test=xt, y_test=yt)
  base.update(arrays)
  np.savez(path, **{k: v for k, v in base.items() if v is not None})
  return str(path)


def write_folder(root, classes=('cat', 'dog'), per_class=(3, 2), size=(6, 6), mode='RGB'):
  """root/train/CLASS/i.png and root/test/CLASS/i.png; each image one flat
  level encoding class and index."""
  from PIL import Image
  for split, n in zip(('train', 'test'), per_class):
    for c, name in enumerate(classes):
      folder = root / split / name
      folder.mkdir(parents=True, exist_ok=True)
      for i in range(n):
        level = 10 + 100 * c + 10 * i
        Image.new(mode, size, (level,) * len(mode) if mode != 'L' else level).save(
            folder / f'{i}.png')
  return str(root)


# ----------------------------------------------------------------- a train state


def mlp_setup(n=40, seed=0):
  """A small MLP's train state, one step in (BN statistics off their init, so
  eval mode matters), and n random 3x3 images of 4 classes."""
  import jax
  import jax.numpy as jnp
  import numpy as np

  from dash_jax import models, optim, train
  model = models.MLP(num_classes=4, width=8, depth=2)
  state = train.create_state(model, optim.sgd(0.05), jax.random.PRNGKey(seed), (3, 3, 1), False)
  rng = np.random.default_rng(seed)
  data = {'train_x': jnp.asarray(rng.integers(0, 256, (n, 3, 3, 1), dtype=np.uint8)),
          'train_y': jnp.asarray(rng.integers(0, 4, n, dtype=np.int32)),
          'mean': jnp.asarray([100.0]), 'std': jnp.asarray([60.0])}
  x = train.normalise(data['train_x'], data['mean'], data['std'])
  state, _ = train.train_step(state, x, data['train_y'], jnp.ones(n), train.StepConfig())
  return state, data


def converge(state, key, data, buffer_idx, n, on_epoch=None, **kw):
  """train_until_converged on a plain run: a group of one seed."""
  import dataclasses

  import jax

  from dash_jax import train
  group = lambda tree: jax.tree.map(lambda x: x[None], tree)
  data = dict(data, train_y=data['train_y'][None])
  if on_epoch is not None:
    kw['on_epoch'] = lambda i, e, acc, loss, s: on_epoch(e, acc, loss, s)
  if 'on_checkpoint' in kw:
    on_checkpoint = kw['on_checkpoint']
    kw['on_checkpoint'] = lambda s, k, p: on_checkpoint(s, k, p[0])
  fields = {f.name for f in dataclasses.fields(train.TrainOptions)}
  opts = train.TrainOptions(**{f: kw.pop(f) for f in list(kw) if f in fields})
  s, k, st = train.train_until_converged(
      group(state), group(key), train.ExperimentData(data, buffer_idx[None], n), opts,
      train.EpochHooks(**kw))
  return train.take_seed(s, 0), k[0], st[0]


def normalisation(config, ds):
  """setup.normalisation for a one-run config: what its run would feed."""
  from dash_jax import setup
  return setup.normalisation(config.normalize, config.model, ds)


# A launch's process in a JAX cluster of two on this machine (config.coordinator).
_HOST_CHILD = """
import json, sys
from configs.digits import get_config
from dash_jax.launch import runs
from dash_jax.launch import config as config_lib
c = get_config()
c.data_dir = {tfds!r}
c.num_chunks, c.max_epoch, c.width, c.progress = 2, 2, 16, False
{setup}
c.coordinator, c.num_processes, c.process_id = {coord!r}, 2, int(sys.argv[1])
lines = []
res = runs.run(c, {work!r}, log=lines.append)
ran = sorted(l.split(': ', 1)[1] for l in lines if l.startswith('run '))
print('RESULT ' + json.dumps({{'ran': ran, 'returned': sorted(res)}}))
"""


def two_hosts(setup: str, tfds_dir, workdir) -> list[dict]:
  """A tiny digits launch as two processes of one cluster; each process's
  {'ran': runs it trained, 'returned': runs it reported}. `setup`: lines
  setting the config `c` (config_lib is imported)."""
  import socket
  with socket.socket() as s:
    s.bind(('localhost', 0))
    port = s.getsockname()[1]
  code = _HOST_CHILD.format(tfds=str(tfds_dir), work=str(workdir), setup=setup,
                            coord=f'localhost:{port}')
  env = dict(os.environ, JAX_PLATFORMS='cpu', TF_CPP_MIN_LOG_LEVEL='3')
  procs = [subprocess.Popen([sys.executable, '-c', code, str(i)], env=env, cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in range(2)]
  outs = [p.communicate(timeout=600) for p in procs]
  for p, (_, err) in zip(procs, outs):
    assert p.returncode == 0, err[-3000:]
  return [json.loads([line for line in out.splitlines() if line.startswith('RESULT ')][-1][7:])
          for out, _ in outs]
