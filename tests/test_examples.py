"""The copy-and-run examples run end to end (tiny sizes) and print each round."""
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LINE = re.compile(r'round (\d)/2  warm: test acc ([\d.]+)% \((\d+) epochs\)  '
                  r'dash: test acc ([\d.]+)% \((\d+) epochs\)')


@pytest.mark.slow
@pytest.mark.parametrize('name', ['linen_digits', 'nnx_digits'])
def test_example_prints_one_line_per_round(name):
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  out = subprocess.run(
      [sys.executable, '-m', f'examples.{name}', '--rounds', '2', '--max-epochs', '3'],
      check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  rows = [LINE.fullmatch(line) for line in out.stdout.strip().splitlines()]
  assert all(rows) and [int(m[1]) for m in rows] == [1, 2], out.stdout
  first = rows[0].groups()
  assert first[1:3] == first[3:5]  # before any DASH, both runs are the same run
  for m in rows:
    assert 10.0 < float(m[2]) <= 100.0 and 10.0 < float(m[4]) <= 100.0  # above chance
    assert 1 <= int(m[3]) <= 3 and 1 <= int(m[5]) <= 3  # --max-epochs honoured
