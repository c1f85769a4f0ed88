"""bench/device_check.sh --smoke: every row of the GPU table comes out, at toy
sizes on CPU, and its test counts come from pytest's JUnit report."""
import os
import subprocess
import sys

import jax.numpy as jnp
import pytest

from tests import helpers



# The repo root is importable (pytest.ini pythonpath); imported in the tests,
# so that collecting this file builds nothing.


@pytest.mark.slow
def test_smoke_writes_every_row(tmp_path):
  out = tmp_path / 'out'
  proc = subprocess.run(
      ['bash', 'bench/device_check.sh', '--smoke', '--out', str(out), '--tests', 'none'],
      cwd=helpers.ROOT, capture_output=True, text=True, timeout=900, check=False,
      # the script's python3 is this interpreter, venv or not
      env=dict(os.environ, PATH=os.pathsep.join([os.path.dirname(sys.executable),
                                                 os.environ.get('PATH', '')])))
  assert proc.returncode == 0, proc.stderr[-3000:]
  text = (out / 'device_check.md').read_text()
  assert text in proc.stdout  # printed as written
  rows = {}
  for line in text.splitlines():
    if line.startswith('| ') and not line.startswith('| check'):
      cells = [c.strip() for c in line.strip('|').split('|')]
      assert len(cells) == 6, line
      assert cells[0] not in rows, f'row twice: {cells[0]}'
      rows[cells[0]] = cells
  from bench.device_check import sizes
  expected = sizes.row_names(sizes.SMOKE)
  assert list(rows) == expected
  for name, cells in rows.items():
    notes = cells[5]
    assert 'failed' not in notes and 'budget' not in notes, (name, notes)
  # bfloat16 steps: the GPU run's (the same code as float32's, at a dtype).
  bf16 = [n for n in expected if n.startswith('ResNet-18 ') and 'bfloat16' in n]
  assert len(bf16) == 6 and all(rows[n][5] == sizes.NOT_IN_SMOKE for n in bf16)
  measured = [n for n in expected if n.startswith(('ResNet-18 SGD step',
                                                  'ResNet-18 SAM step',
                                                  'vmapped seeds', 'separate processes',
                                                  'DASH direction', 'evaluation',
                                                  'protocol')) and n not in bf16]
  for name in measured:
    ms, images_s = rows[name][1], rows[name][2]
    assert float(ms) > 0 and float(images_s.replace(',', '')) > 0, (name, rows[name])
  assert rows['tests'][5] == 'skipped: --tests none'
  for kind in ('DASH-SGD', 'cold-SGD'):
    assert ' h: ' in rows[f'projection: paper CIFAR-10 {kind}'][5]
  assert '172,700 steps' in rows['projection: paper CIFAR-10 DASH-SGD'][5]
  assert '145,800 steps' in rows['projection: paper CIFAR-10 cold-SGD'][5]
  assert 'GPU device check' in text and 'jax ' in text


def test_projection_adds_steps_direction_and_evaluation():
  from bench.device_check.projection import projection
  row = projection('dash', step_ms=10.0, dir_ms_per_image=0.001,
                      eval_ms_per_image=0.002)
  steps_h = 50 * 3454 * 10.0 / 3.6e6
  dir_h = sum(range(2, 51)) * 1000 * 0.001 / 3.6e6
  eval_h = 50 * 10_000 * 0.002 / 3.6e6
  assert row.notes.startswith(f'{steps_h + dir_h + eval_h:.2f} h')
  cold = projection('cold', step_ms=10.0, dir_ms_per_image=1.0, eval_ms_per_image=0.0)
  assert cold.notes.startswith(f'{50 * 2916 * 10.0 / 3.6e6:.2f} h') and 'direction' not in cold.notes


SAMPLE_TESTS = ('import time\n'
                'import pytest\n'
                'def test_a(): assert True\n'
                'def test_b(): assert True\n'
                'def test_c(): assert False\n'
                'def test_d(): pytest.skip("no")\n')


@pytest.mark.slow
def test_test_counts_come_from_the_junit_report(tmp_path):
  from bench.device_check.tests_row import run_tests
  f = tmp_path / 'test_sample.py'
  f.write_text(SAMPLE_TESTS)
  row = run_tests([str(f)], str(tmp_path), timeout_s=120)
  assert row.notes.startswith('2 passed, 1 failed, 0 errors, 1 skipped'), row.notes
  assert 'test_c' in row.notes
  assert (tmp_path / 'device_check_tests.xml').exists()  # pytest's own report, read


@pytest.mark.slow
@pytest.mark.slow
def test_stopped_tests_are_counted_so_far(tmp_path):
  """Past its time pytest is interrupted, and still reports what ran."""
  from bench.device_check.tests_row import run_tests
  f = tmp_path / 'test_sample.py'
  f.write_text(SAMPLE_TESTS + 'def test_e(): time.sleep(600)\ndef test_f(): pass\n')
  row = run_tests([str(f)], str(tmp_path), timeout_s=12)
  assert row.notes.startswith('stopped after 12 s, so far: 2 passed, 1 failed, 0 errors, '
                              '1 skipped'), row.notes


def test_junit_counts_read_the_testsuite_attributes(tmp_path):
  from bench.device_check.tests_row import junit_counts
  xml = tmp_path / 'report.xml'
  xml.write_text('<?xml version="1.0"?><testsuites><testsuite name="pytest" errors="1" '
                 'failures="2" skipped="3" tests="10">'
                 '<testcase classname="m" name="ok"/>'
                 '<testcase classname="m" name="bad"><failure message="x"/></testcase>'
                 '<testcase classname="m" name="broken"><error message="y"/></testcase>'
                 '</testsuite></testsuites>')
  assert junit_counts(str(xml)) == {'passed': 4, 'failed': 2, 'errors': 1, 'skipped': 3,
                                    'failing': ['m.bad', 'm.broken']}


@pytest.mark.parametrize('name', ['resnet18', 'mlp'])
def test_models_are_built_in_the_asked_precision(name):
  from bench.device_check.steps import make_model
  assert make_model(name, 'bfloat16', 8).dtype == jnp.bfloat16
  assert make_model(name, 'float32', 8).dtype == jnp.float32
