"""bench/device_check.sh --smoke: every row of the GPU table comes out, at toy
sizes on CPU, and its test-count parsing reads pytest's report right."""
import subprocess

import jax.numpy as jnp
import pytest

from tests import helpers



def _device_check():
  from bench import device_check  # the repo root is importable (pytest.ini pythonpath)
  return device_check


@pytest.mark.slow
def test_smoke_writes_every_row(tmp_path):
  out = tmp_path / 'out'
  proc = subprocess.run(
      ['bash', 'bench/device_check.sh', '--smoke', '--out', str(out), '--tests', 'none'],
      cwd=helpers.ROOT, capture_output=True, text=True, timeout=900, check=False)
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
  dc = _device_check()
  expected = dc.row_names(dc.SMOKE)
  assert list(rows) == expected
  for name, cells in rows.items():
    notes = cells[5]
    assert 'failed' not in notes and 'budget' not in notes, (name, notes)
  # bfloat16 steps: the GPU run's (the same code as float32's, at a dtype).
  bf16 = [n for n in expected if n.startswith('ResNet-18 ') and 'bfloat16' in n]
  assert len(bf16) == 6 and all(rows[n][5] == dc.NOT_IN_SMOKE for n in bf16)
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
  dc = _device_check()
  row = dc.projection('dash', step_ms=10.0, dir_ms_per_image=0.001,
                      eval_ms_per_image=0.002)
  steps_h = 50 * 3454 * 10.0 / 3.6e6
  dir_h = sum(range(2, 51)) * 1000 * 0.001 / 3.6e6
  eval_h = 50 * 10_000 * 0.002 / 3.6e6
  assert row.notes.startswith(f'{steps_h + dir_h + eval_h:.2f} h')
  cold = dc.projection('cold', step_ms=10.0, dir_ms_per_image=1.0, eval_ms_per_image=0.0)
  assert cold.notes.startswith(f'{50 * 2916 * 10.0 / 3.6e6:.2f} h') and 'direction' not in cold.notes


@pytest.mark.slow
def test_test_counts_come_from_the_report(tmp_path):
  dc = _device_check()
  f = tmp_path / 'test_sample.py'
  f.write_text('import pytest\n'
               'def test_a(): assert True\n'
               'def test_b(): assert True\n'
               'def test_c(): assert False\n'
               'def test_d(): pytest.skip("no")\n')
  row = dc.run_tests([str(f)], str(tmp_path), timeout_s=120)
  assert row.notes.startswith('2 passed, 1 failed, 0 errors, 1 skipped'), row.notes
  assert 'test_c' in row.notes


@pytest.mark.parametrize('name', ['resnet18', 'mlp'])
def test_models_are_built_in_the_asked_precision(name):
  dc = _device_check()
  assert dc.make_model(name, 'bfloat16', 8).dtype == jnp.bfloat16
  assert dc.make_model(name, 'float32', 8).dtype == jnp.float32
