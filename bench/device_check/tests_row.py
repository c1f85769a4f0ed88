"""The 'tests' row: the GPU-relevant test files under pytest in a fresh
process, counted from pytest's own JUnit XML report (--junitxml)."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

import jax

from bench.device_check.rows import Row

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GPU_TESTS = ('tests/test_train.py', 'tests/test_parallel.py', 'tests/test_models.py',
             'tests/test_dash.py', 'tests/test_seeds.py', 'tests/test_training_types.py',
             'tests/test_conv.py', 'tests/test_batchnorm.py', 'tests/test_sota.py')
SMOKE_TESTS = ('tests/test_optim.py',)
INTERRUPT_GRACE_S = 60  # for pytest to write its report after Ctrl-C


def junit_counts(xml_path: str) -> dict:
  """{'passed', 'failed', 'errors', 'skipped', 'failing'} from the
  testsuite attributes of pytest's --junitxml report."""
  suite = ET.parse(xml_path).getroot()
  suite = suite if suite.tag == 'testsuite' else suite.find('testsuite')
  failed, errors = int(suite.get('failures')), int(suite.get('errors'))
  skipped = int(suite.get('skipped'))
  failing = [f'{c.get("classname")}.{c.get("name")}' for c in suite.iter('testcase')
             if c.find('failure') is not None or c.find('error') is not None]
  return {'passed': int(suite.get('tests')) - failed - errors - skipped, 'failed': failed,
          'errors': errors, 'skipped': skipped, 'failing': failing}


def _pytest(files, xml_path, timeout_s):
  """(log, stopped): pytest run to the end, or interrupted (SIGINT, so it
  still writes its report) after `timeout_s`."""
  env = dict(os.environ, JAX_DEFAULT_MATMUL_PRECISION='highest')
  if jax.default_backend() != 'cpu':
    env['JAX_PLATFORMS'] = ''  # set, so conftest keeps it; empty = JAX picks the GPU
  # -o addopts=: one process (pytest.ini's -n auto would start a worker per core on
  # one GPU, and needs pytest-xdist, which a GPU machine may not have).
  proc = subprocess.Popen([sys.executable, '-m', 'pytest', '-q', '-o', 'addopts=',
                           '-p', 'no:cacheprovider', f'--junitxml={xml_path}', *files],
                          cwd=ROOT, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  try:
    return proc.communicate(timeout=timeout_s)[0], False
  except subprocess.TimeoutExpired:
    proc.send_signal(signal.SIGINT)
  try:
    return proc.communicate(timeout=INTERRUPT_GRACE_S)[0], True
  except subprocess.TimeoutExpired:
    proc.kill()
    return proc.communicate()[0], True


def run_tests(files, out_dir, timeout_s):
  """pytest on `files` at full matmul precision (tests compare code paths to
  ~1e-6; TF32 would fail them for the wrong reason); stopped after `timeout_s`."""
  xml_path = os.path.join(out_dir, 'device_check_tests.xml')
  with contextlib.suppress(FileNotFoundError):
    os.remove(xml_path)  # a report left by an earlier run is not this one's
  start = time.perf_counter()
  log, stopped = _pytest(files, xml_path, timeout_s)
  wall = time.perf_counter() - start
  with open(os.path.join(out_dir, 'device_check_tests.log'), 'w') as f:
    f.write(log)
  where = ', '.join(os.path.basename(f) for f in files)
  if not os.path.exists(xml_path):
    return Row('tests', notes=f'no report from pytest after {wall:.0f} s ({where}); '
               'see device_check_tests.log')
  c = junit_counts(xml_path)
  notes = ((f'stopped after {timeout_s:.0f} s, so far: ' if stopped else '')
           + f'{c["passed"]} passed, {c["failed"]} failed, {c["errors"]} errors, '
           f'{c["skipped"]} skipped in {wall:.0f} s ({where})')
  failing = c['failing']
  if failing:
    notes += '; failing: ' + ', '.join(failing[:8]) + (' ...' if len(failing) > 8 else '')
  return Row('tests', notes=notes)
