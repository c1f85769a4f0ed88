"""The launch's closing table: each summary figure as mean and std over seeds."""
from __future__ import annotations

import json
import os

from dash_jax import aggregate
from dash_jax.results import SUMMARY_FIELDS



def aggregate_rows(results: list[dict]) -> list[dict]:
  """One row per (train_type, optimizer, swept values): mean/std over seeds
  of each field, and the environments the seeds ran in."""
  runs = [aggregate.Run.from_results(r) for r in results]
  groups = aggregate.group(runs, key=lambda r: (r.config['train_type'],
                                                r.config['optimizer'], r.swept))
  rows = []
  for (tt, opt, swept), g in groups.items():
    stats = aggregate.over_seeds(g)
    row = {'train_type': tt, 'optimizer': opt, 'swept': dict(swept), 'seeds': stats.seeds}
    for f in SUMMARY_FIELDS:
      row[f] = {'mean': stats.mean[f], 'std': stats.std[f]}
    row['environments'] = stats.environments
    row['unconverged'] = sum(e.get('converged') is False for r in g
                             for e in r.experiments)
    rows.append(row)
  return rows


def markdown(rows: list[dict]) -> str:
  """The swept fields (if any) are columns after the optimizer."""
  swept = aggregate.swept_fields(tuple(r.get('swept', {}).items()) for r in rows)
  head = ('| train_type | optimizer | ' + ''.join(f'{f} | ' for f in swept) +
          'seeds | test acc last (%) | test acc mean (%) | steps last | steps mean '
          '| steps total |')
  lines = [head, '|' + '---|' * (8 + len(swept))]
  pct = lambda r, f: f"{100 * r[f]['mean']:.2f} ({100 * r[f]['std']:.2f})"
  num = lambda r, f: f"{r[f]['mean']:.0f} ({r[f]['std']:.0f})"
  for r in rows:
    values = ''.join(f"{r.get('swept', {}).get(f, '')} | " for f in swept)
    lines.append(f"| {r['train_type']} | {r['optimizer']} | {values}{len(r['seeds'])} | "
                 f"{pct(r, 'test_acc_last')} | {pct(r, 'test_acc_mean')} | "
                 f"{num(r, 'steps_last')} | {num(r, 'steps_mean')} | "
                 f"{num(r, 'steps_total')} |")
  envs = aggregate.environment_lines(
      (_row_label(r), r.get('environments', [])) for r in rows)
  note = '\n\nmean (std) over seeds.\n'
  stopped = [f'{_row_label(r, "-")}: {r["unconverged"]}' for r in rows if r.get('unconverged')]
  if stopped:
    note += ('experiments that hit max_epoch before converge_acc (over all seeds): '
             + ', '.join(stopped) + '.\n')
  return '\n'.join(lines) + note + '\n' + '\n'.join(envs) + '\n'


def _row_label(row, sep='/') -> str:
  return sep.join([row['train_type'], row['optimizer']] +
                  [f'{f}={v}' for f, v in row.get('swept', {}).items()])


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
  rows = aggregate_rows(results)
  text = markdown(rows)
  if provenance is None:
    provenance = environments(results)
  with open(os.path.join(workdir, 'summary.json'), 'w') as f:
    json.dump({'rows': rows, 'environments': list(provenance)}, f, indent=2)
  with open(os.path.join(workdir, 'summary.md'), 'w') as f:
    f.write(text)
  return text
