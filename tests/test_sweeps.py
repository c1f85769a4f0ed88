"""Sweeps: any run field as a list; one launch runs the grid, names each run
by its swept values, and the tables and figures group by them."""
import json
import os
import re
import sys
import types

import numpy as np
import pytest

from configs.digits import get_config
from dash_jax import observers, results
from dash_jax.errors import UserError
from dash_jax.launch import cli, report, runs, tables
from dash_jax.launch import grid
from dash_jax.launch import config as config_lib
from tests import helpers

QUIET = dict(log=lambda *a: None)


# ------------------------------------------------------------- the grid


def test_grid_crosses_types_optimizers_swept_values_and_seeds():
  config = get_config()
  config.train_type, config.optimizer, config.seeds = 'dash,sp', 'sgd,sam', '0,1'
  config_lib.set_sweep(config, 'dash_alpha', [0.3, 1.0])
  config_lib.set_sweep(config, 'dash_lambda', [0.1, 0.5, 0.7])
  config_lib.validate(config)
  specs = grid.points(config)
  assert len(specs) == 2 * 2 * 3 * 2 * 2
  assert len({s.name for s in specs}) == len(specs)
  # Names list dash_lambda before dash_alpha (SHORT_NAMES order), seeds vary fastest.
  assert [s.name for s in specs[:3]] == ['dash-sgd-lam0.1-alpha0.3-seed0',
                                        'dash-sgd-lam0.1-alpha0.3-seed1',
                                        'dash-sgd-lam0.1-alpha1.0-seed0']
  assert specs[-1].name == 'sp-sam-lam0.7-alpha1.0-seed1'
  one = grid.run_fields(config, specs[-1])
  assert (one['dash_lambda'], one['dash_alpha'], one['train_type'], one['optimizer'],
          one['seeds']) == (0.7, 1.0, 'sp', 'sam', '1')
  assert isinstance(one['dash_lambda'], float)
  assert list(one['swept']) == ['dash_lambda', 'dash_alpha']
  settings = grid.run_settings(one)
  assert settings.swept == (('dash_lambda', 0.7), ('dash_alpha', 1.0))
  assert (settings.train_type, settings.optim.optimizer, settings.seed) == ('sp', 'sam', 1)
  # The launch's config keeps its lists.
  assert config.dash_lambda == (0.1, 0.5, 0.7)


def test_unswept_launch_keeps_its_names_and_configs():
  config = get_config()
  specs = grid.points(config)
  assert [s.name for s in specs][:2] == ['cold-sgd-seed0', 'cold-sgd-seed1']
  one = grid.run_fields(config, specs[0])
  assert 'swept' not in one and one['dash_lambda'] == 0.3


@pytest.mark.parametrize('field,values,expected', [
    ('learning_rate', [0.01, 1e-05], ['lr0.01', 'lr1e-05']),
    ('sp_sigma', [0.01], ['spsig0.01']),
    ('l2_init_lambda', [0.1], ['l2lam0.1']),
    ('label_noise', [0.0], ['noise0.0']),
    ('width', [32, 64], ['width32', 'width64']),
    ('dash_per', ['kernel', 'neuron'], ['dash_per_kernel', 'dash_per_neuron']),
    ('sota', [False, True], ['sota_False', 'sota_True']),
])
def test_folder_names(field, values, expected):
  config = get_config()
  config.train_type, config.seeds = 'dash', '3'
  config_lib.set_sweep(config, field, values)
  assert [s.name for s in grid.points(config)] == [f'dash-sgd-{e}-seed3' for e in expected]


def test_values_that_would_share_a_folder_are_refused():
  config = get_config()
  config.train_type, config.seeds = 'dash', '0'
  config_lib.set_sweep(config, 'model', ['a/b', 'a_b'])
  with pytest.raises(UserError, match='would share the folder dash-sgd-model_a_b-seed0'):
    grid.points(config)


def test_vmapped_groups_are_per_swept_values():
  config = get_config()
  config.train_type, config.seeds, config.vmap_seeds = 'dash', '0,1,2', True
  config_lib.set_sweep(config, 'dash_lambda', [0.1, 0.5])
  groups = grid.groups(grid.plan(config, 'w'), config.vmap_seeds)
  assert [[s.name for s in g] for g in groups] == [
      [f'dash-sgd-lam0.1-seed{s}' for s in range(3)],
      [f'dash-sgd-lam0.5-seed{s}' for s in range(3)]]


# ------------------------------------------------------- command line


def _parsed(*overrides):
  config = get_config()
  argv, lists = cli.split_lists(['launch.py', '--config=configs/default.py', *overrides])
  cli.apply_lists(config, lists)
  return argv, config


def test_command_line_lists_are_typed_like_their_field():
  argv, config = _parsed('--config.dash_lambda=0.1, 0.5', '--config.batch_size=64,128',
                         '--config.sota=true,False', '--config.dash_per=[kernel,neuron]',
                         '--config.train_type=dash,cold', '--config.seeds=0,1')
  # The launch's own list fields stay for ml_collections.
  assert argv == ['launch.py', '--config=configs/default.py',
                  '--config.train_type=dash,cold', '--config.seeds=0,1']
  assert config.dash_lambda == (0.1, 0.5) and config.batch_size == (64, 128)
  assert type(config.batch_size[0]) is int
  assert config.sota == (True, False) and config.dash_per == ('kernel', 'neuron')
  assert list(config_lib.sweeps(config)) == ['dash_lambda', 'batch_size', 'dash_per', 'sota']


@pytest.mark.parametrize('override,message', [
    ('--config.dash_lambda=0.1,,0.5',
     '--config.dash_lambda=0.1,,0.5 has an empty element'),
    ('--config.batch_size=64,1.5', "--config.batch_size=64,1.5: '1.5' is not an int"),
    ('--config.sota=true,maybe', "'maybe' is not a bool"),
    ('--config.dash_lamda=0.1,0.5', "unknown config field 'dash_lamda'"),
])
def test_bad_command_line_lists_are_named(override, message):
  with pytest.raises(UserError, match=re.escape(message)):
    _parsed(override)


@pytest.mark.parametrize('field,values,message', [
    ('data_dir', ['a', 'b'], 'config.data_dir takes one value, not a list'),
    ('vmap_seeds', [True, False], 'config.vmap_seeds takes one value'),
    ('checkpoint_every_epochs', [1, 2], 'config.checkpoint_every_epochs takes one value'),
    ('num_train', [100, 200], 'config.num_train takes one value'),
    ('wandb', [True, False], 'config.wandb takes one value'),
    ('dash_lambda', [], 'config.dash_lambda is an empty list'),
    ('dash_lambda', [0.1, 0.1], "config.dash_lambda='0.1,0.1' lists a value twice"),
    ('dash_per', ['kernel', ''], 'holds an empty or nested element'),
    ('dash_lambda', [0.1, 1.5], 'config.dash_lambda=1.5 is outside (0.0, 1.0]'),
    ('learning_rate', [0.1, -1.0], 'config.learning_rate=-1.0 must be > 0'),
    ('dash_per', ['kernel', 'row'], "unknown dash_per 'row'"),
])
def test_bad_lists_are_one_line_naming_field_and_value(field, values, message):
  config = get_config()
  config_lib.set_sweep(config, field, values)
  with pytest.raises(UserError) as e:
    config_lib.validate(config)
  assert message in str(e.value) and '\n' not in str(e.value)


def test_cli_list_errors_are_one_line(tmp_path, launch_in_process):
  for override, message in [('--config.data_dir=a,b', 'config.data_dir takes one value'),
                            ('--config.dash_alpha=0.3,,1', 'has an empty element')]:
    code, _, err = launch_in_process('--config', os.path.join(helpers.ROOT, 'configs/digits.py'),
                                     '--workdir', tmp_path / 'w', override)
    lines = [l for l in err.splitlines() if l.strip()]
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith('error: ') and message in lines[0]
  assert not os.path.exists(tmp_path / 'w')


# ------------------------------------------------------------- launches


@pytest.fixture
def sweep_config(tiny_config):
  tiny_config.train_type = 'dash'
  tiny_config.progress = False
  config_lib.set_sweep(tiny_config, 'dash_lambda', [0.1, 0.5])
  return tiny_config


@pytest.mark.slow
def test_swept_launch_equals_separate_launches_and_resumes(sweep_config, tmp_path):
  work = str(tmp_path / 'sweep')
  launched = runs.run(sweep_config, work, **QUIET)
  assert sorted(launched) == ['dash-sgd-lam0.1-seed0', 'dash-sgd-lam0.5-seed0']
  for lam in (0.1, 0.5):
    saved = results.read_json(os.path.join(work, f'dash-sgd-lam{lam}-seed0', 'results.json'))
    assert saved['config']['dash_lambda'] == lam and saved['config']['swept'] == ['dash_lambda']
    single = get_config()
    single.update(sweep_config.to_dict() | {'dash_lambda': lam})
    alone = runs.run(single, str(tmp_path / f'alone{lam}'), **QUIET)['dash-sgd-seed0']
    assert helpers.numbers(alone) == helpers.numbers(saved)
  assert (helpers.numbers(launched['dash-sgd-lam0.1-seed0'])
          != helpers.numbers(launched['dash-sgd-lam0.5-seed0']))

  # Relaunch: finished runs are read back; an unfinished one resumes from its
  # checkpoint and gives the same numbers.
  os.remove(os.path.join(work, 'dash-sgd-lam0.5-seed0', 'results.json'))
  lines = []
  again = runs.run(sweep_config, work, log=lines.append)
  assert any('dash-sgd-lam0.1-seed0 finished earlier' in l for l in lines)
  assert any('[dash-sgd-lam0.5-seed0] resuming at experiment 4' in l for l in lines)
  assert helpers.numbers(again['dash-sgd-lam0.5-seed0']) == helpers.numbers(launched['dash-sgd-lam0.5-seed0'])

  # The guard: the same swept runs with another setting are refused.
  sweep_config.max_epoch = 2
  with pytest.raises(UserError, match='dash-sgd-lam0.1-seed0 was made with a different '
                                      r'config \(max_epoch: 3 -> 2\)'):
    runs.run(sweep_config, work, **QUIET)

  # The summary and the report: a row per swept value, the value in a column.
  rows = json.loads((tmp_path / 'sweep' / 'summary.json').read_text())['rows']
  assert [r['swept'] for r in rows] == [{'dash_lambda': 0.1}, {'dash_lambda': 0.5}]
  md = (tmp_path / 'sweep' / 'report.md').read_text()
  assert '| optimizer | training type | dash_lambda | seeds |' in md
  assert '| SGD | DASH | 0.1 | 1 |' in md and '| SGD | DASH | 0.5 | 1 |' in md
  assert (tmp_path / 'sweep' / 'sensitivity_dash_lambda.png').exists()


def _events(folder):
  """The events as written (the non-raw loader migrates scalars to tensors)."""
  observers._tensorboard_without_tf()
  from tensorboard.backend.event_processing import event_file_loader
  from tensorboard.compat.proto import event_pb2
  out = []
  for name in sorted(os.listdir(folder)):
    if name.startswith('events.out'):
      loader = event_file_loader.RawEventFileLoader(os.path.join(folder, name))
      out += [event_pb2.Event.FromString(raw) for raw in loader.Load()]
  return out


@pytest.mark.slow
def test_hparams_event_holds_swept_values_and_final_metrics(sweep_config, tmp_path):
  from tensorboard.plugins.hparams import metadata, plugin_data_pb2
  sweep_config.dash_lambda = (0.5,)
  runs.run(sweep_config, str(tmp_path), **QUIET)
  folder = tmp_path / 'dash-sgd-lam0.5-seed0'
  events = _events(folder)
  starts = [v for e in events for v in e.summary.value
            if v.tag == metadata.SESSION_START_INFO_TAG]
  assert len(starts) == 1
  assert starts[0].metadata.plugin_data.plugin_name == metadata.PLUGIN_NAME
  data = plugin_data_pb2.HParamsPluginData.FromString(starts[0].metadata.plugin_data.content)
  hp = data.session_start_info.hparams
  assert hp['dash_lambda'].number_value == 0.5
  assert hp['train_type'].string_value == 'dash' and hp['seed'].number_value == 0
  assert data.session_start_info.group_name == 'dash-sgd-lam0.5-seed0'
  final = {v.tag: v.simple_value for e in events for v in e.summary.value
           if v.tag.startswith('final/')}
  res = results.read_json(folder / 'results.json')['summary']
  assert final['final/test_acc_last'] == pytest.approx(res['test_acc_last'])
  assert final['final/steps_total'] == res['steps_total']


@pytest.mark.slow
def test_vmapped_seed_groups_with_a_sweep_match_plain_runs(sweep_config, tmp_path):
  sweep_config.seeds = '0,1'
  plain = runs.run(sweep_config, str(tmp_path / 'plain'), **QUIET)
  sweep_config.vmap_seeds = True
  lines = []
  vmapped = runs.run(sweep_config, str(tmp_path / 'vmap'), log=lines.append)
  assert [l for l in lines if l.startswith('run ')] == [
      'run 1/2: dash-sgd-lam0.1, seeds [0, 1] as one program',
      'run 2/2: dash-sgd-lam0.5, seeds [0, 1] as one program']
  for lam in (0.1, 0.5):
    assert (tmp_path / 'vmap' / f'dash-sgd-lam{lam}-seeds0_1' / 'checkpoints').is_dir()
  assert sorted(plain) == sorted(vmapped) and len(plain) == 4
  for name in plain:
    for a, b in zip(helpers.numbers(plain[name]), helpers.numbers(vmapped[name]), strict=True):
      assert (a['steps'], a['epochs']) == (b['steps'], b['epochs'])
      assert b['test_acc'] == pytest.approx(a['test_acc'], abs=1e-5)


@pytest.mark.slow
def test_two_processes_share_a_sweep(tfds_dir, tmp_path):
  found = helpers.two_hosts("c.train_type, c.seeds = 'dash', '0'\n"
                            "config_lib.set_sweep(c, 'dash_lambda', [0.1, 0.5])", tfds_dir, tmp_path)
  assert sorted(r['ran'][0] for r in found) == ['dash-sgd-lam0.1-seed0',
                                                'dash-sgd-lam0.5-seed0']
  assert found[0]['returned'] == ['dash-sgd-lam0.1-seed0', 'dash-sgd-lam0.5-seed0']
  rows = json.loads((tmp_path / 'summary.json').read_text())['rows']
  assert [r['swept'] for r in rows] == [{'dash_lambda': 0.1}, {'dash_lambda': 0.5}]


# --------------------------------------------------- tables and figures


def _write(root, tt, seed, accs, steps, **swept):
  config = {'experiment': 'incremental', 'dataset': 'digits', 'optimizer': 'sgd',
            'train_type': tt, 'seeds': str(seed), 'num_chunks': len(accs), 'model': 'mlp',
            **swept}
  if swept:
    config['swept'] = list(swept)
  exps = [{'experiment': j, 'num_train': 10 * j, 'test_acc': a, 'test_loss': 1.0,
           'train_acc': 1.0, 'train_loss': 0.1, 'steps': s, 'epochs': s, 'wall_s': 0.1}
          for j, (a, s) in enumerate(zip(accs, steps), 1)]
  spec = grid.Point(tt, 'sgd', seed, tuple(swept.items()))
  res = {'config': config, 'experiments': exps, 'summary': results.summarise(exps)}
  results.write_json(os.path.join(root, spec.name, 'results.json'), res)
  return res


# dash_lambda -> seed -> (accuracies, steps); cold: a run of no sweep.
DASH = {0.1: {0: ([.5, .7], [10, 20]), 1: ([.5, .8], [10, 30])},
        0.5: {0: ([.5, .9], [10, 10]), 1: ([.5, .7], [10, 14])},
        0.3: {0: ([.5, .6], [10, 40]), 1: ([.5, .6], [10, 40])}}
COLD = {0: ([.4, .6], [20, 20]), 1: ([.4, .8], [20, 30])}


@pytest.fixture
def sweep_results(tmp_path):
  root = str(tmp_path / 'runs')
  written = [_write(root, 'dash', seed, *v, dash_lambda=lam)
             for lam, by_seed in DASH.items() for seed, v in by_seed.items()]
  written += [_write(root, 'cold', seed, *v) for seed, v in COLD.items()]
  return root, written


def test_summary_and_report_rows_per_swept_value(sweep_results, tmp_path):
  root, written = sweep_results
  rows = tables.json_rows(tables.rows([tables.RunResult.from_results(r)
                                           for r in written]))
  assert [(r['train_type'], r['swept']) for r in rows] == [
      ('dash', {'dash_lambda': 0.1}), ('dash', {'dash_lambda': 0.5}),
      ('dash', {'dash_lambda': 0.3}), ('cold', {})]
  assert rows[1]['test_acc_last']['mean'] == pytest.approx(0.8)
  assert rows[1]['steps_total']['std'] == pytest.approx(2.0)
  md = tables.markdown(tables.rows([tables.RunResult.from_results(r) for r in written]))
  assert '| train_type | optimizer | dash_lambda | seeds |' in md
  assert '| dash | sgd | 0.5 | 2 | 80.00 (10.00) |' in md and '| cold | sgd |  | 2 |' in md

  rep = report.write([root], str(tmp_path / 'out'))
  # Report rows in table order: training types in paper order, values ascending.
  assert [(r.train_type, r.swept) for r in rep.rows] == [
      ('cold', ()), ('dash', (('dash_lambda', 0.1),)), ('dash', (('dash_lambda', 0.3),)),
      ('dash', (('dash_lambda', 0.5),))]
  assert '| SGD | DASH | 0.3 | 2 | 60.00 (0.00) |' in rep.markdown
  assert '| SGD | Cold |  | 2 |' in rep.markdown
  assert not [l for l in rep.markdown.splitlines() if l.startswith('Note:')]
  with open(rep.paths['csv']) as f:
    head, *lines = f.read().splitlines()
  assert head.split(',')[:5] == ['dataset', 'optimizer', 'train_type', 'dash_lambda',
                                 'num_seeds']
  assert [l.split(',')[3] for l in lines] == ['', '0.1', '0.3', '0.5']
  assert '![last experiment test accuracy and total steps against dash_lambda]' \
         '(sensitivity_dash_lambda.png)' in rep.markdown


def test_sensitivity_figure_lines_and_baseline(sweep_results, tmp_path):
  root, _ = sweep_results
  rep = report.write([root], str(tmp_path / 'out'))
  path = rep.paths[('sensitivity', 'dash_lambda')]
  assert os.path.basename(path) == 'sensitivity_dash_lambda.png'
  from matplotlib import image
  assert image.imread(path).shape[:2] == (400, 1000)

  groups = report.group(report.gather([root])[0])
  by_tt = {}
  for (_, _, tt, swept), g in groups.items():
    by_tt.setdefault(tt, {})[dict(swept).get('dash_lambda')] = g
  fig = report.build_sensitivity('dash_lambda', {('digits', 'sgd'): by_tt})
  acc_ax, steps_ax = fig.axes[:2]
  (dash_acc,) = [l for l in acc_ax.lines if l.get_label().startswith('DASH')]
  assert dash_acc.get_label() == 'DASH (2 seeds)'
  np.testing.assert_allclose(dash_acc.get_xdata(), [0.1, 0.3, 0.5])
  # Mean over seeds of the last experiment's accuracy, in %, computed here.
  expected = [100 * np.mean([DASH[lam][s][0][-1] for s in (0, 1)]) for lam in (0.1, 0.3, 0.5)]
  np.testing.assert_allclose(dash_acc.get_ydata(), expected)
  (dash_steps,) = [l for l in steps_ax.lines if l.get_label().startswith('DASH')]
  np.testing.assert_allclose(dash_steps.get_ydata(), [
      np.mean([sum(DASH[lam][s][1]) for s in (0, 1)]) for lam in (0.1, 0.3, 0.5)])
  # The std band of DASH at lambda=0.1: mean +- population std of 70 and 80.
  band = acc_ax.collections[0].get_paths()[0].vertices
  at = band[np.isclose(band[:, 0], 0.1), 1]
  assert at.min() == pytest.approx(70) and at.max() == pytest.approx(80)
  # Cold ran without the sweep: a dashed level at its own mean.
  (cold,) = [l for l in acc_ax.lines if l.get_label().startswith('Cold')]
  assert cold.get_linestyle() == '--' and cold.get_label() == 'Cold (not swept)'
  np.testing.assert_allclose(cold.get_ydata(), [70, 70])


def test_two_swept_fields_make_no_sensitivity_figure(tmp_path):
  root = str(tmp_path / 'runs')
  for lam in (0.1, 0.5):
    for alpha in (0.3, 1.0):
      _write(root, 'dash', 0, [.5, .6], [1, 2], dash_lambda=lam, dash_alpha=alpha)
  rep = report.write([root], str(tmp_path / 'out'))
  assert len(rep.rows) == 4
  assert not [p for p in os.listdir(tmp_path / 'out') if p.startswith('sensitivity')]
  assert '| SGD | DASH | 0.5 | 1.0 | 1 |' in rep.markdown


# ---------------------------------------------------------------- wandb


def test_wandb_missing_package_is_one_line(monkeypatch):
  monkeypatch.setitem(sys.modules, 'wandb', None)  # import wandb -> ImportError
  config = get_config()
  config.wandb = True
  with pytest.raises(UserError) as e:
    config_lib.validate(config)
  assert str(e.value).startswith('config.wandb=True needs the wandb package: pip install wandb')
  with pytest.raises(UserError, match='pip install wandb'):
    observers.WandbLogger(grid.plan(config, '/nonexistent')[0])


def test_wandb_missing_package_on_the_command_line(tmp_path, launch_in_process, monkeypatch):
  monkeypatch.setitem(sys.modules, 'wandb', None)  # import wandb -> ImportError
  code, _, err = launch_in_process('--config', os.path.join(helpers.ROOT, 'configs/digits.py'),
                                   '--workdir', tmp_path / 'w', '--config.wandb=True')
  lines = [l for l in err.splitlines() if l.strip()]
  assert code == 2 and len(lines) == 1, err
  assert 'pip install wandb' in lines[0]


class _FakeWandbRun:
  def __init__(self, calls, kwargs):
    self.calls, self.kwargs, self.summary = calls, kwargs, {}
    self.logged = []

  def log(self, values, step):
    self.logged.append((step, values))

  def finish(self):
    self.calls.append(('finish', self.kwargs['name']))


@pytest.mark.slow
def test_wandb_gets_config_scalars_and_final_metrics(sweep_config, tmp_path, monkeypatch):
  calls = []
  fake = types.ModuleType('wandb')
  fake.init = lambda **kw: calls.append(('init', _FakeWandbRun(calls, kw))) or calls[-1][1]
  monkeypatch.setitem(sys.modules, 'wandb', fake)
  sweep_config.wandb = True
  launched = runs.run(sweep_config, str(tmp_path), **QUIET)
  made = [c[1] for c in calls if c[0] == 'init']
  assert [r.kwargs['name'] for r in made] == ['dash-sgd-lam0.1-seed0', 'dash-sgd-lam0.5-seed0']
  assert [c for c in calls if c[0] == 'finish'] == [('finish', r.kwargs['name']) for r in made]
  run = made[1]
  assert run.kwargs['config']['dash_lambda'] == 0.5 and run.kwargs['group'] == 'dash-sgd-lam0.5'
  res = launched['dash-sgd-lam0.5-seed0']
  per_exp = [v for _, v in run.logged if 'experiment/test_acc' in v]
  assert [v['experiment/test_acc'] for v in per_exp] == [
      e['test_acc'] for e in res['experiments']]
  epochs = [s for s, v in run.logged if 'epoch/train_acc' in v]
  assert epochs == list(range(1, sum(e['epochs'] for e in res['experiments']) + 1))
  steps = [s for s, _ in run.logged]
  assert steps == sorted(steps)  # wandb refuses a step that goes back
  assert run.summary['test_acc_last'] == res['summary']['test_acc_last']
  assert run.summary['steps_total'] == res['summary']['steps_total']


@pytest.mark.slow
def test_wandb_offline_when_installed(sweep_config, tmp_path, monkeypatch):
  pytest.importorskip('wandb')
  monkeypatch.setenv('WANDB_MODE', 'offline')
  monkeypatch.setenv('WANDB_DIR', str(tmp_path))
  sweep_config.wandb = True
  sweep_config.dash_lambda = (0.5,)
  runs.run(sweep_config, str(tmp_path / 'w'), **QUIET)
  assert any(name.startswith('offline-run') for _, dirs, _ in os.walk(tmp_path)
             for name in dirs)
