"""The launch's closing table (summary.md/json): aggregate.rows, each summary
figure as mean and std over seeds; report.py is the other view of those rows."""
from __future__ import annotations

import json
import os

from dash_jax import aggregate
from dash_jax.results import SUMMARY_FIELDS


def json_rows(rows: list[aggregate.Row]) -> list[dict]:
  """summary.json's rows: per (train_type, optimizer, swept values) the
  mean/std over seeds of each field, and the environments the seeds ran in."""
  out = []
  for r in rows:
    row = {'train_type': r.train_type, 'optimizer': r.optimizer, 'swept': dict(r.swept),
           'seeds': r.seeds}
    for f in SUMMARY_FIELDS:
      row[f] = {'mean': r.mean[f], 'std': r.std[f]}
    row['environments'] = r.environments
    row['unconverged'] = r.unconverged
    out.append(row)
  return out


def markdown(rows: list[aggregate.Row]) -> str:
  """The swept fields (if any) are columns after the optimizer."""
  swept = aggregate.swept_fields(r.swept for r in rows)
  head = ('| train_type | optimizer | ' + ''.join(f'{f} | ' for f in swept) +
          'seeds | test acc last (%) | test acc mean (%) | steps last | steps mean '
          '| steps total |')
  lines = [head, '|' + '---|' * (8 + len(swept))]
  pct = lambda r, f: f"{100 * r.mean[f]:.2f}" + r.spread(f'{100 * r.std[f]:.2f}')
  num = lambda r, f: f"{r.mean[f]:.0f}" + r.spread(f'{r.std[f]:.0f}')
  for r in rows:
    values = ''.join(f"{dict(r.swept).get(f, '')} | " for f in swept)
    lines.append(f"| {r.train_type} | {r.optimizer} | {values}{len(r.seeds)} | "
                 f"{pct(r, 'test_acc_last')} | {pct(r, 'test_acc_mean')} | "
                 f"{num(r, 'steps_last')} | {num(r, 'steps_mean')} | "
                 f"{num(r, 'steps_total')} |")
  envs = aggregate.environment_lines((_row_label(r), r.environments) for r in rows)
  note = '\n\n' + spread_note(rows) + '\n'
  stopped = [f'{_row_label(r, "-")}: {r.unconverged}' for r in rows if r.unconverged]
  if stopped:
    note += ('experiments that hit max_epoch before converge_acc (over all seeds): '
             + ', '.join(stopped) + '.\n')
  return '\n'.join(lines) + note + '\n' + '\n'.join(envs) + '\n'


def spread_note(rows) -> str:
  """What the cells show: mean (std) over seeds; a row of one seed has no
  spread to show, so it shows its value alone."""
  single = [len(r.seeds) == 1 for r in rows]
  if all(single):
    return 'one seed: its values (no spread over seeds).'
  return 'mean (std) over seeds' + ('; rows of one seed: the value alone.' if any(single)
                                    else '.')


def _row_label(row, sep='/') -> str:
  return sep.join([row.train_type, row.optimizer] + [f'{f}={v}' for f, v in row.swept])


def environments(results: list[dict]) -> list[dict]:
  """The distinct provenance blocks of the results, ignoring start/end times
  and command line (which differ between any two runs)."""
  out = {}
  for r in results:
    block = r.get('provenance')
    if block:
      out.setdefault(_environment_fingerprint(block), block)
  return list(out.values())


def _environment_fingerprint(block):
  per_run = ('start_time', 'end_time', 'command')
  return json.dumps({k: v for k, v in block.items() if k not in per_run}, sort_keys=True)


def write(workdir: str, results: list[dict], provenance: list[dict] | None = None) -> str:
  """summary.json ({'rows', 'environments'}) and summary.md in the workdir;
  returns the Markdown. provenance: the launch's blocks (default: those the
  results carry)."""
  rows = aggregate.rows([aggregate.RunResult.from_results(r) for r in results])
  text = markdown(rows)
  if provenance is None:
    provenance = environments(results)
  with open(os.path.join(workdir, 'summary.json'), 'w') as f:
    json.dump({'rows': json_rows(rows), 'environments': list(provenance)}, f, indent=2)
  with open(os.path.join(workdir, 'summary.md'), 'w') as f:
    f.write(text)
  return text
