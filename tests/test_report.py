"""Table 1 and Figure 1 from hand-written results.json files with known numbers."""
import csv
import io
import json
import os
import runpy
import sys
import warnings

import numpy as np
import pytest
from matplotlib import image

from dash_jax.errors import UserError
from dash_jax.launch import report, tables
from dash_jax.launch import saved

# (dataset, optimizer, train_type) -> per seed: (test accuracies, steps)
RUNS = {
    ('digits', 'sgd', 'cold'): {0: ([.50, .70, .80], [10, 20, 30]),
                                1: ([.60, .70, .90], [12, 20, 34])},
    ('digits', 'sgd', 'warm'): {0: ([.50, .60, .65], [10, 5, 5]),
                                1: ([.50, .60, .65], [10, 5, 5])},
    ('digits', 'sgd', 'dash'): {0: ([.50, .80, .90], [10, 15, 20]),
                                1: ([.60, .80, .92], [12, 15, 20])},
    ('digits', 'sam', 'dash'): {0: ([.55, .85, .95], [20, 30, 40])},
    ('svhn', 'sgd', 'warm'): {3: ([.70, .80, .90], [8, 4, 4])},
    ('svhn', 'sgd', 'cold'): {3: ([.70, .85, .95], [8, 8, 4])},
}


def write_run(root, dataset, opt, tt, seed, accs, steps, provenance=None, **extra):
  config = {'experiment': 'incremental', 'dataset': dataset, 'optimizer': opt,
            'train_type': tt, 'seed': seed, 'seeds': str(seed),
            'num_chunks': len(accs), 'model': 'mlp', **extra}
  exps = [{'experiment': j, 'num_train': 10 * j, 'test_acc': a, 'test_loss': 1.0,
           'train_acc': 1.0, 'train_loss': 0.1, 'steps': s, 'epochs': s, 'wall_s': 0.1}
          for j, (a, s) in enumerate(zip(accs, steps), 1)]
  path = os.path.join(root, dataset, f'{tt}-{opt}-seed{seed}')
  os.makedirs(path)
  res = {'config': config, 'experiments': exps, 'summary': {}}
  if provenance is not None:
    res['provenance'] = provenance
  with open(os.path.join(path, 'results.json'), 'w') as f:
    json.dump(res, f)


@pytest.fixture
def results_dir(tmp_path):
  root = tmp_path / 'runs'
  for (dataset, opt, tt), seeds in RUNS.items():
    for seed, (accs, steps) in seeds.items():
      write_run(str(root), dataset, opt, tt, seed, accs, steps)
  # Not part of the table: another experiment, a run cut short.
  os.makedirs(root / 'synthetic')
  (root / 'synthetic' / 'results.json').write_text(json.dumps(
      {'config': {'experiment': 'synthetic'}, 'experiments': []}))
  write_run(str(root / 'partial'), 'digits', 'sgd', 'cold', 7, [.5], [1], num_chunks=3)
  return root


def md_rows(text):
  """{(dataset, 'SGD', 'Cold'): [cells]} from the Markdown tables."""
  rows, dataset = {}, None
  for line in text.splitlines():
    if line.startswith('## '):
      dataset = line[3:]
    elif line.startswith(('| SGD', '| SAM')):
      cells = [c.strip() for c in line.strip('|').split('|')]
      rows[(dataset, cells[0], cells[1])] = cells[2:]
  return rows


def test_markdown_table_numbers_and_best(results_dir, tmp_path):
  rep = report.write([str(results_dir)], str(tmp_path / 'out'))
  text = (tmp_path / 'out' / 'report.md').read_text()
  assert text == rep.markdown
  rows = md_rows(text)
  assert list(rows) == [('digits', 'SGD', 'Cold'), ('digits', 'SGD', 'Warm'),
                        ('digits', 'SGD', 'DASH'), ('digits', 'SAM', 'DASH'),
                        ('svhn', 'SGD', 'Cold'), ('svhn', 'SGD', 'Warm')]
  # seeds | acc last | acc mean | steps last | steps mean; mean (std), best bold
  assert rows[('digits', 'SGD', 'Cold')] == [
      '2', '85.00 (5.00)', '70.00 (3.33)', '32 (2)', '21 (1)']
  assert rows[('digits', 'SGD', 'Warm')] == [
      '2', '65.00 (0.00)', '58.33 (0.00)', '**5 (0)**', '**7 (0)**']
  assert rows[('digits', 'SGD', 'DASH')] == [
      '2', '**91.00 (1.00)**', '**75.33 (2.00)**', '20 (0)', '15 (0)']
  # A block of one row has nothing to beat; one seed has no spread to show.
  assert rows[('digits', 'SAM', 'DASH')] == ['1', '95.00', '78.33', '40', '30']
  # Ties (as shown) are all marked.
  assert rows[('svhn', 'SGD', 'Cold')] == ['1', '**95.00**', '**83.33**', '**4**', '7']
  assert rows[('svhn', 'SGD', 'Warm')] == ['1', '90.00', '80.00', '**4**', '**5**']
  assert 'mean (std) over seeds (population std); rows of one seed: the value alone.' in text
  assert '](figure_digits_sgd.png)' in text and '](figure_svhn_sgd.png)' in text
  assert len(rep.skipped) == 2
  assert 'incomplete (1/3 experiments)' in text and 'a synthetic experiment' in text


def test_summary_and_report_are_two_views_of_the_same_rows(results_dir, tmp_path):
  """summary.md/json (the launch's table) and report.md/csv, fed the same
  runs, show the same rows with the same numbers."""
  res = [json.loads(p.read_text()) for p in sorted((results_dir / 'digits').glob('*/results.json'))]
  text = tables.write(str(tmp_path), res)
  rep = report.write([str(results_dir / 'digits')], str(tmp_path / 'out'))
  in_summary = {}
  for line in text.splitlines():
    cells = [c.strip() for c in line.strip('|').split('|')]
    if line.startswith('| ') and cells[0] != 'train_type':  # tt | opt | seeds | 5 figures
      in_summary[('digits', cells[1].upper(), report.label(cells[0]))] = cells[2:7]
  in_report = {k: [c.strip('*') for c in cells] for k, cells in md_rows(rep.markdown).items()}
  assert len(in_report) == 4 and in_report == in_summary
  saved = json.loads((tmp_path / 'summary.json').read_text())['rows']
  csv_rows = list(csv.DictReader(io.StringIO((tmp_path / 'out' / 'report.csv').read_text())))
  by_key = {(r['train_type'], r['optimizer']): r for r in csv_rows}
  assert sorted(by_key) == sorted((r['train_type'], r['optimizer']) for r in saved)
  for row in saved:
    got = by_key[(row['train_type'], row['optimizer'])]
    assert got['seeds'] == ' '.join(map(str, row['seeds']))
    for m in report.METRICS:
      for stat in ('mean', 'std'):
        # the same figure; % are scaled per seed before averaging (last bits)
        assert float(got[f'{m.key}_{stat}']) == pytest.approx(m.scale * row[m.key][stat],
                                                              rel=1e-12, abs=1e-12)


def test_one_seed_tables_show_no_spread(results_dir, tmp_path):
  """A launch of one seed: no '(0.00)' (a spread of one value) in either table."""
  res = [json.loads(p.read_text()) for p in sorted((results_dir / 'svhn').glob('*/results.json'))]
  text = tables.write(str(tmp_path), res)
  rows = [l for l in text.splitlines() if l.startswith(('| cold', '| warm'))]
  assert rows == ['| cold | sgd | 1 | 95.00 | 83.33 | 4 | 7 | 20 |',
                  '| warm | sgd | 1 | 90.00 | 80.00 | 4 | 5 | 16 |']
  assert 'one seed: its values (no spread over seeds).' in text and '(' not in ''.join(rows)
  rep = report.write([str(results_dir / 'svhn')], str(tmp_path / 'out'))
  assert '(0' not in rep.markdown.split('## svhn')[1].split('Environment')[0]
  assert 'one seed: its values' in rep.markdown


def test_figure_names_are_short(tmp_path):
  """Your own data's figures are named after the file's stem (the folder's
  name, tfds's NAME/CONFIG), not its whole path; two files of one stem keep
  their whole names rather than share one figure."""
  assert report.short_dataset('/data/x/V.npz') == 'V'
  assert report.short_dataset('npz:rel/W.NPZ') == 'W'
  assert report.short_dataset('folder:/data/imgs/') == 'imgs'
  assert report.short_dataset('tfds:mnist/c1') == 'mnist/c1'
  assert report.short_dataset('cifar10') == 'cifar10'
  for i, dataset in enumerate([str(tmp_path / 'deep' / 'dir' / 'V.npz'), 'digits']):
    write_run(str(tmp_path / 'runs' / str(i)), 'd', 'sgd', 'cold', 0, [.5, .6], [3, 4])
    path = tmp_path / 'runs' / str(i) / 'd' / 'cold-sgd-seed0' / 'results.json'
    res = json.loads(path.read_text())
    res['config']['dataset'] = dataset
    path.write_text(json.dumps(res))
  rep = report.write([str(tmp_path / 'runs')], str(tmp_path / 'out'))
  names = sorted(os.path.basename(p) for k, p in rep.paths.items() if isinstance(k, tuple))
  assert names == ['figure_V_sgd.png', 'figure_digits_sgd.png']
  assert '](figure_V_sgd.png)' in rep.markdown and (tmp_path / 'out' / 'figure_V_sgd.png').is_file()
  same = report.figure_names([('/a/V.npz', 'sgd'), ('/b/V.npz', 'sgd'), ('/b/V.npz', 'sam')])
  assert len(set(same.values())) == 3 and same[('/b/V.npz', 'sam')] == 'figure__b_V_npz_sam.png'


def test_a_damaged_results_json_is_one_line_naming_it(results_dir, tmp_path):
  """One rule for a damaged results.json, in the report as in the launch."""
  bad = results_dir / 'digits' / 'cold-sgd-seed0' / 'results.json'
  for damaged in ('{"config": ', json.dumps({'config': {'experiment': 'incremental'},
                                             'experiments': [{'test_acc': 0.5}]})):
    bad.write_text(damaged)
    with pytest.raises(UserError) as from_report:
      report.write([str(results_dir)], str(tmp_path / 'out'))
    with pytest.raises(UserError) as from_launch:
      saved.read_run(str(bad))
    message = str(from_report.value)
    assert message == str(from_launch.value)
    assert message.startswith(f'{bad} is damaged') and '\n' not in message


def test_csv_full_precision_and_flags(results_dir, tmp_path):
  report.write([str(results_dir)], str(tmp_path))
  rows = list(csv.DictReader(io.StringIO((tmp_path / 'report.csv').read_text())))
  assert list(rows[0]) == report.CSV_FIELDS
  assert [(r['dataset'], r['optimizer'], r['train_type']) for r in rows] == [
      ('digits', 'sgd', 'cold'), ('digits', 'sgd', 'warm'), ('digits', 'sgd', 'dash'),
      ('digits', 'sam', 'dash'), ('svhn', 'sgd', 'cold'), ('svhn', 'sgd', 'warm')]
  dash = rows[2]
  assert dash['seeds'] == '0 1' and dash['num_seeds'] == '2'
  assert float(dash['test_acc_mean_mean']) == pytest.approx(100 * (2.2 / 3 + 2.32 / 3) / 2)
  assert float(dash['steps_mean_mean']) == pytest.approx((15 + 47 / 3) / 2)
  assert float(dash['steps_mean_std']) == pytest.approx((47 / 3 - 15) / 2)
  assert [r['test_acc_last_best'] for r in rows] == ['0', '0', '1', '0', '1', '0']
  assert [r['steps_last_best'] for r in rows] == ['0', '1', '0', '0', '1', '1']


def test_figure_lines_bands_and_png(results_dir, tmp_path):
  groups = report.group(report.gather([str(results_dir)])[0])
  by_tt = {tt: runs for (d, o, tt, _), runs in groups.items() if (d, o) == ('digits', 'sgd')}
  fig = report.build_figure('digits', 'sgd', by_tt)
  acc_ax, steps_ax = fig.axes[:2]
  assert [l.get_label() for l in acc_ax.lines] == [
      'Cold (2 seeds)', 'Warm (2 seeds)', 'DASH (2 seeds)']
  np.testing.assert_allclose(acc_ax.lines[0].get_xdata(), [1, 2, 3])
  np.testing.assert_allclose(acc_ax.lines[0].get_ydata(), [55, 70, 85])
  np.testing.assert_allclose(acc_ax.lines[2].get_ydata(), [55, 80, 91])
  np.testing.assert_allclose(steps_ax.lines[0].get_ydata(), [11, 20, 32])
  np.testing.assert_allclose(steps_ax.lines[1].get_ydata(), [10, 5, 5])
  # Std bands: cold's accuracy band spans mean +- std at each experiment.
  band = acc_ax.collections[0].get_paths()[0].vertices
  assert band[:, 1].min() == pytest.approx(50) and band[:, 1].max() == pytest.approx(90)
  assert acc_ax.get_ylabel() == 'test accuracy (%)' and steps_ax.get_ylabel() == 'steps'

  rep = report.write([str(results_dir)], str(tmp_path))
  png = rep.paths[('digits', 'sgd')]
  assert os.path.basename(png) == 'figure_digits_sgd.png'
  assert image.imread(png).shape[:2] == (400, 1000)
  assert sorted(p for p in os.listdir(tmp_path) if p.endswith('.png')) == [
      'figure_digits_sam.png', 'figure_digits_sgd.png', 'figure_svhn_sgd.png']


def test_mixed_settings_are_flagged(tmp_path):
  write_run(str(tmp_path), 'digits', 'sgd', 'cold', 0, [.5, .6], [1, 2], width=32)
  write_run(str(tmp_path), 'digits', 'sgd', 'cold', 1, [.5, .6], [1, 2], width=64)
  text = report.write([str(tmp_path)]).markdown
  assert 'digits/sgd/cold: seeds differ in width' in text


def test_several_workdirs_combine(results_dir, tmp_path):
  other = tmp_path / 'other'
  write_run(str(other), 'digits', 'sgd', 'sp', 0, [.6, .7, .8], [3, 3, 3])
  rep = report.write([str(results_dir), str(other)], str(tmp_path / 'out'))
  assert ('digits', 'SGD', 'S&P') in md_rows(rep.markdown)


def test_cli_empty_folder_is_a_one_line_error(tmp_path, capsys):
  assert report.main([str(tmp_path)]) == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith('error: no complete results.json below') and '\n' not in err
  with pytest.raises(UserError, match='not a folder'):
    report.write([str(tmp_path / 'missing')])


def test_cli_module_entry_point(results_dir, tmp_path, capsys, monkeypatch):
  """`python -m dash_jax.launch.report DIR --out OUT`, run as __main__ in this process."""
  out = tmp_path / 'out'
  monkeypatch.setattr(sys, 'argv', ['dash_jax.launch.report', str(results_dir), '--out', str(out)])
  with warnings.catch_warnings():  # runpy: the module is imported already
    warnings.simplefilter('ignore', RuntimeWarning)
    with pytest.raises(SystemExit) as e:
      runpy.run_module('dash_jax.launch.report', run_name='__main__', alter_sys=True)
  assert e.value.code == 0
  assert '| SGD | DASH | 2 |' in capsys.readouterr().out
  assert {'report.md', 'report.csv', 'figure_digits_sgd.png'} <= set(os.listdir(out))


def env_block(jax_version='0.10.2', device_kind='cpu', processor='Intel Xeon'):
  """The fields of provenance.collect that environment_key reads."""
  return {'libraries': {'jax': jax_version, 'jaxlib': jax_version},
          'backend': 'cpu' if device_kind == 'cpu' else 'gpu', 'device_kind': device_kind,
          'device_count': 1, 'processor': processor, 'precision': 'float32',
          'start_time': '2020-01-01T00:00:00Z'}


def table_tail(text, dataset):
  """The lines between a dataset's table and the next heading or figure."""
  lines = text.split(f'## {dataset}\n', 1)[1].splitlines()
  rest = [l for l in lines if not l.startswith('|')]
  out = []
  for line in rest:
    if line.startswith(('## ', '![', 'mean (std)')):
      break
    out.append(line)
  return [l for l in out if l]


def test_environment_line_under_each_table(tmp_path):
  one = env_block()
  for seed in (0, 1):
    write_run(str(tmp_path), 'digits', 'sgd', 'cold', seed, [.5, .6], [1, 2],
              provenance=dict(one, start_time=f'2020-01-0{seed + 1}T00:00:00Z'))
  write_run(str(tmp_path), 'digits', 'sgd', 'dash', 0, [.5, .7], [1, 2], provenance=one)
  write_run(str(tmp_path), 'svhn', 'sgd', 'cold', 0, [.5, .6], [1, 2])
  rep = report.write([str(tmp_path)])
  assert table_tail(rep.markdown, 'digits') == [
      'Environment: jax 0.10.2, cpu x1 (Intel Xeon), float32.']
  assert table_tail(rep.markdown, 'svhn') == ['Environment: environment not recorded.']
  assert 'come from' not in rep.markdown
  assert [r.environments for r in rep.rows] == [
      ['jax 0.10.2, cpu x1 (Intel Xeon), float32']] * 2 + [['environment not recorded']]
  with open(rep.paths['csv']) as f:
    rows = list(csv.DictReader(f))
  assert rows[0]['environments'] == 'jax 0.10.2, cpu x1 (Intel Xeon), float32'


def test_rows_from_different_environments_are_noted(tmp_path):
  cpu, gpu = env_block(), env_block('0.4.30', 'NVIDIA H200', 'AMD EPYC')
  write_run(str(tmp_path), 'digits', 'sgd', 'cold', 0, [.5, .6], [1, 2], provenance=cpu)
  write_run(str(tmp_path), 'digits', 'sgd', 'cold', 1, [.5, .6], [1, 2], provenance=gpu)
  write_run(str(tmp_path), 'digits', 'sgd', 'dash', 0, [.5, .7], [1, 2], provenance=gpu)
  write_run(str(tmp_path), 'digits', 'sam', 'dash', 0, [.5, .7], [1, 2])
  text = report.write([str(tmp_path)]).markdown
  assert table_tail(text, 'digits') == [
      'Note: rows of this table come from 3 environments:',
      '- jax 0.10.2, cpu x1 (Intel Xeon), float32: SGD Cold',
      '- jax 0.4.30, NVIDIA H200 x1 (AMD EPYC), float32: SGD Cold, SGD DASH',
      '- environment not recorded: SAM DASH']


def _run(tt, accs, **swept):
  config = {'experiment': 'incremental', 'dataset': 'digits', 'optimizer': 'sgd',
            'train_type': tt, 'seeds': '0', 'num_chunks': len(accs), 'swept': list(swept),
            **swept}
  exps = [{'experiment': j, 'test_acc': a, 'steps': 10 * j} for j, a in enumerate(accs, 1)]
  return tables.RunResult(None, config, exps)


def _line_styles(fig):
  from matplotlib.colors import to_rgba
  return [(to_rgba(l.get_color()), l.get_marker()) for l in fig.axes[0].lines]


@pytest.mark.parametrize('lambdas', [(0.1, 0.5), (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)])
def test_figure_lines_have_distinct_colours_and_markers(lambdas):
  """Cold, warm, S&P and a DASH sweep: up to 10 lines, no two alike (the
  sweep's lines once took the cycle's first colours: cold and DASH both
  blue)."""
  lines = {('cold', ()): [_run('cold', [.5, .6, .7])], ('warm', ()): [_run('warm', [.5, .6, .6])]}
  if len(lambdas) > 2:
    lines[('sp', ())] = [_run('sp', [.5, .6, .65])]
  for lam in lambdas:
    lines[('dash', (('dash_lambda', lam),))] = [_run('dash', [.5, .6, .6 + lam / 10],
                                                      dash_lambda=lam)]
  fig = report.build_figure('digits', 'sgd', lines)
  styles = _line_styles(fig)
  assert len(styles) == len(lines) <= 10
  assert len({c for c, _ in styles}) == len(styles), styles
  assert len({m for _, m in styles}) == len(styles), styles
  # A training type of one line keeps the paper's colour.
  from matplotlib.colors import to_rgba
  assert styles[0][0] == to_rgba(report.COLORS['cold'])
  assert styles[1][0] == to_rgba(report.COLORS['warm'])


def test_figure_legend_is_outside_the_plots(results_dir):
  groups = report.group(report.gather([str(results_dir)])[0])
  by_tt = {tt: runs for (d, o, tt, _), runs in groups.items() if (d, o) == ('digits', 'sgd')}
  fig = report.build_figure('digits', 'sgd', by_tt)
  assert all(ax.get_legend() is None for ax in fig.axes)
  (legend,) = fig.legends
  assert [t.get_text() for t in legend.get_texts()] == [
      'Cold (2 seeds)', 'Warm (2 seeds)', 'DASH (2 seeds)']
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  renderer = FigureCanvasAgg(fig).get_renderer()
  fig.draw(renderer)  # the constrained layout places the legend
  box = legend.get_window_extent(renderer)
  for ax in fig.axes:
    assert not box.overlaps(ax.get_window_extent(renderer)), ax.get_ylabel()
  assert box.x0 >= max(ax.get_window_extent(renderer).x1 for ax in fig.axes)


def test_rows_launched_at_the_defaults_show_the_default_in_swept_columns(tmp_path):
  """A DASH sweep over dash_lambda beside a cold run launched at the defaults:
  cold's dash_lambda cell is the value it ran with, not a blank."""
  root = str(tmp_path)
  for lam in (0.1, 0.5):
    write_run(root, 'digits', 'sgd', 'dash', 0, [.5, .7], [1, 2], dash_lambda=lam,
              swept=['dash_lambda'])
    os.rename(os.path.join(root, 'digits', 'dash-sgd-seed0'),
              os.path.join(root, 'digits', f'dash-sgd-lam{lam}-seed0'))
  write_run(root, 'digits', 'sgd', 'cold', 0, [.5, .6], [1, 2], dash_lambda=0.3)
  rep = report.write([root], str(tmp_path / 'out'))
  assert '| SGD | Cold | 0.3 | 1 |' in rep.markdown
  assert '| SGD | DASH | 0.1 | 1 |' in rep.markdown and '| SGD | DASH | 0.5 | 1 |' in rep.markdown
  with open(rep.paths['csv']) as f:
    rows = list(csv.DictReader(f))
  assert [(r['train_type'], r['dash_lambda']) for r in rows] == [
      ('cold', '0.3'), ('dash', '0.1'), ('dash', '0.5')]


def test_paired_table_against_dash_seed_by_seed(results_dir, tmp_path):
  """digits/sgd: DASH - cold = 10 and 2 points (+6.00 (4.00), ahead on both),
  DASH - warm = 25 and 27; blocks with one seed or no DASH get no table."""
  text = report.write([str(results_dir)], str(tmp_path / 'out')).markdown
  assert '| DASH - Cold | SGD | 2 | +6.00 (4.00) | 2 of 2 |' in text
  assert '| DASH - Warm | SGD | 2 | +26.00 (1.00) | 2 of 2 |' in text
  assert text.count('DASH minus each type, paired by seed') == 1  # not SAM (1 seed), not svhn


def test_paired_uses_only_common_seeds_and_counts_ties_as_not_ahead(tmp_path):
  root = str(tmp_path / 'runs')
  for seed, (dash_acc, cold_acc) in enumerate([(.9, .9), (.8, .7), (.6, .7)]):
    write_run(root, 'digits', 'sgd', 'dash', seed, [dash_acc], [1])
    write_run(root, 'digits', 'sgd', 'cold', seed, [cold_acc], [1])
  write_run(root, 'digits', 'sgd', 'cold', 9, [.1], [1])  # no DASH seed 9: left out
  text = report.write([root], str(tmp_path / 'out')).markdown
  assert '| DASH - Cold | SGD | 3 | +0.00 (8.16) | 1 of 3 |' in text


def test_experiments_stopped_by_max_epoch_are_noted(tmp_path):
  root = str(tmp_path / 'runs')
  write_run(root, 'digits', 'sgd', 'cold', 0, [.5, .6], [1, 2])
  path = os.path.join(root, 'digits', 'cold-sgd-seed0', 'results.json')
  res = json.load(open(path))
  res['experiments'][1]['converged'] = False
  json.dump(res, open(path, 'w'))
  write_run(root, 'digits', 'sgd', 'warm', 0, [.5, .6], [1, 2])
  text = report.write([root], str(tmp_path / 'out')).markdown
  assert 'Note: digits/sgd/cold: 1 of 2 experiments (over its seeds) hit max_epoch' in text
  assert 'digits/sgd/warm:' not in text


def test_paired_table_against_another_type_and_an_unknown_one(results_dir, tmp_path, capsys):
  text = report.write([str(results_dir)], str(tmp_path / 'out'), against='warm').markdown
  assert 'Warm minus each type, paired by seed' in text
  assert '| Warm - DASH | SGD | 2 | -26.00 (1.00) | 0 of 2 |' in text
  assert report.main([str(results_dir), '--out', str(tmp_path / 'o2'), '--against', 'wram']) == 2
  assert capsys.readouterr().err.startswith('error: --against=wram is no training type')
