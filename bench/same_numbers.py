"""Do two workdirs hold the same numbers? For a refactor that must change none.

    python -m bench.same_numbers REF_WORKDIR NEW_WORKDIR

Compares every results.json of the two launches field by field: the config,
each experiment's record and the summary, exactly (floats by value), ignoring
what says how a run went rather than what it computed (wall_s, compiles,
compile_s, compiles_total) and the provenance's times, command and git state
(a refactor compares two commits: that they differ is the point); then
summary.json's rows and report.csv, exactly. Prints each difference and exits
1 if there is any.
"""
from __future__ import annotations

import csv
import json
import pathlib
import sys

from dash_jax import results

IGNORED_SUMMARY = ('compiles_total',)
IGNORED_PROVENANCE = ('start_time', 'end_time', 'command', 'git')


def _diff(where, a, b, out):
  """Field-by-field differences of two JSON values, appended to `out`."""
  if isinstance(a, dict) and isinstance(b, dict):
    for k in sorted(set(a) | set(b), key=str):
      if k not in a or k not in b:
        out.append(f'{where}.{k}: only in {"new" if k in b else "reference"}')
      else:
        _diff(f'{where}.{k}', a[k], b[k], out)
  elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
    for i, (x, y) in enumerate(zip(a, b)):
      _diff(f'{where}[{i}]', x, y, out)
  elif a != b or type(a) is not type(b):
    out.append(f'{where}: {a!r} -> {b!r}')


def _without(d, fields):
  return {k: v for k, v in (d or {}).items() if k not in fields}


def compare_results(ref: dict, new: dict, where: str, out: list) -> int:
  """Differences of two results.json; returns the number of fields compared."""
  fields = 0
  _diff(f'{where}:config', ref['config'], new['config'], out)
  exps = [[_without(e, results.EXECUTION_RECORD_FIELDS) for e in r['experiments']]
          for r in (ref, new)]
  if len(exps[0]) != len(exps[1]):
    out.append(f'{where}: {len(exps[0])} -> {len(exps[1])} experiments')
  for i, (a, b) in enumerate(zip(*exps)):
    _diff(f'{where}:experiments[{i}]', a, b, out)
    fields += len(a)
  _diff(f'{where}:summary', _without(ref['summary'], IGNORED_SUMMARY),
        _without(new['summary'], IGNORED_SUMMARY), out)
  _diff(f'{where}:provenance', _without(ref.get('provenance'), IGNORED_PROVENANCE),
        _without(new.get('provenance'), IGNORED_PROVENANCE), out)
  return fields + len(ref['summary']) + len(ref['config'])


def compare(ref_dir, new_dir) -> tuple[list[str], int, int]:
  """(differences, results.json files compared, record fields compared)."""
  ref_dir, new_dir = pathlib.Path(ref_dir), pathlib.Path(new_dir)
  out, files, fields = [], 0, 0
  names = {p.relative_to(d).as_posix() for d in (ref_dir, new_dir)
           for p in d.rglob(results.RESULTS)}
  for name in sorted(names):
    if not (ref_dir / name).exists() or not (new_dir / name).exists():
      out.append(f'{name}: only in {"new" if (new_dir / name).exists() else "reference"}')
      continue
    files += 1
    fields += compare_results(results.read_json(ref_dir / name),
                              results.read_json(new_dir / name), name, out)
  for name in ('summary.json',):
    if (ref_dir / name).exists() or (new_dir / name).exists():
      ref = json.loads((ref_dir / name).read_text())
      new = json.loads((new_dir / name).read_text())
      _diff(name, ref['rows'], new['rows'], out)
  if (ref_dir / 'report.csv').exists() or (new_dir / 'report.csv').exists():
    rows = [list(csv.DictReader((d / 'report.csv').open())) for d in (ref_dir, new_dir)]
    _diff('report.csv', *rows, out)
  return out, files, fields


def main(argv=None) -> int:
  argv = sys.argv[1:] if argv is None else argv
  if len(argv) != 2:
    print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
    return 2
  diffs, files, fields = compare(*argv)
  for d in diffs:
    print(d)
  print(f'{files} results.json compared ({fields} fields): '
        + (f'{len(diffs)} differences' if diffs else 'identical'))
  return 1 if diffs else 0


if __name__ == '__main__':
  sys.exit(main())
