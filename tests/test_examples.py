"""The copy-and-run examples run end to end (tiny sizes) and print each round."""
import re
import runpy
import sys

import pytest

LINE = re.compile(r'round (\d)/2  warm: test acc ([\d.]+)% \((\d+) epochs\)  '
                  r'dash: test acc ([\d.]+)% \((\d+) epochs\)')


@pytest.mark.slow
@pytest.mark.parametrize('name', ['linen_digits', 'nnx_digits'])
def test_example_prints_one_line_per_round(name, monkeypatch, capsys):
  """`python -m examples.NAME --rounds 2 --max-epochs 3`, run as __main__ here."""
  monkeypatch.setattr(sys, 'argv', [f'{name}.py', '--rounds', '2', '--max-epochs', '3'])
  runpy.run_module(f'examples.{name}', run_name='__main__')
  stdout = capsys.readouterr().out
  rows = [LINE.fullmatch(line) for line in stdout.strip().splitlines()]
  assert all(rows) and [int(m[1]) for m in rows] == [1, 2], stdout
  first = rows[0].groups()
  assert first[1:3] == first[3:5]  # before any DASH, both runs are the same run
  for m in rows:
    assert 10.0 < float(m[2]) <= 100.0 and 10.0 < float(m[4]) <= 100.0  # above chance
    assert 1 <= int(m[3]) <= 3 and 1 <= int(m[5]) <= 3  # --max-epochs honoured
