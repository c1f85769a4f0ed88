"""Validation: every bad input is one line naming the field and the fix."""
import json
import os

import pytest

from configs.digits import get_config
from dash_jax.errors import UserError
from dash_jax.launch import config as config_lib
from dash_jax.launch import saved
from dash_jax.launch import grid
from tests import helpers


BAD = [
    ('dataset', 'imagenet1k', "unknown dataset 'imagenet1k'; valid:"),
    ('model', 'resnet50', "unknown model 'resnet50'; valid:"),
    ('train_type', 'cold,hot', "unknown train_type 'hot'; valid: cbp, cold, dash"),
    ('optimizer', 'adam', "unknown optimizer 'adam'; valid: sam, sgd"),
    ('dash_lambda', 0.0, 'config.dash_lambda=0.0 is outside (0.0, 1.0]'),
    ('dash_lambda', 1.5, 'config.dash_lambda=1.5 is outside (0.0, 1.0]'),
    ('sp_lambda', -0.1, 'config.sp_lambda=-0.1 is outside (0.0, 1.0]'),
    ('dash_alpha', 0.0, 'config.dash_alpha=0.0 is outside (0.0, 1.0]'),
    ('converge_acc', 1.2, 'config.converge_acc=1.2 is outside (0.0, 1.0]'),
    ('num_chunks', 0, 'config.num_chunks=0 must be > 0'),
    ('redo_tau', -0.1, 'config.redo_tau=-0.1 must be >= 0'),
    ('cbp_replacement_rate', 2.0, 'config.cbp_replacement_rate=2.0 is outside [0.0, 1.0]'),
    ('cbp_maturity_threshold', -1, 'config.cbp_maturity_threshold=-1 must be >= 0'),
    ('learning_rate', -0.1, 'config.learning_rate=-0.1 must be > 0'),
    ('batch_size', 0, 'config.batch_size=0 must be > 0'),
    ('max_epoch', 0, 'config.max_epoch=0 must be > 0'),
    ('label_noise', 1.5, 'config.label_noise=1.5 is outside [0.0, 1.0]'),
    ('seeds', '0,x', "config.seeds='0,x' is not a comma-separated list of int"),
    ('seeds', '1,1', 'lists a value twice'),
]


@pytest.mark.parametrize('field,value,message', BAD)
def test_bad_values_are_named(field, value, message):
  config = get_config()
  config[field] = value
  with pytest.raises(UserError) as e:
    config_lib.validate(config)
  assert message in str(e.value)
  assert '\n' not in str(e.value)


def test_default_config_is_valid_and_lists_runs():
  config = get_config()
  config_lib.validate(config)
  specs = grid.plan(config, 'w')
  assert len(specs) == 12
  assert (specs[0].name, specs[0].folder, specs[0].settings.train_type) == (
      'cold-sgd-seed0', 'w/cold-sgd-seed0', 'cold')
  assert specs[-1].name == 'dash-sgd-seed2'


def test_too_many_chunks_for_the_data(tiny_config, tmp_path):
  import dash_jax
  tiny_config.num_chunks = 5000
  with pytest.raises(UserError, match='num_chunks=5000 exceeds the 1258 training examples'):
    dash_jax.run(tiny_config, str(tmp_path))
  assert not os.listdir(tmp_path)  # nothing written before the check


@pytest.mark.parametrize('args,message', [
    (['--config', 'configs/nope.py', '--workdir', 'W'], 'config file configs/nope.py not found'),
    (['--config', 'configs/digits.py', '--workdir', 'W', '--config.learnig_rate=1'],
     'Did you mean "learning_rate"'),
    (['--config', 'configs/digits.py', '--workdir', 'W', '--config.batch_size=abc'],
     '--config.batch_size=abc'),
    (['--config', 'configs/digits.py', '--workdir', 'W', '--config.optimizer=adam'],
     "unknown optimizer 'adam'"),
])
def test_cli_errors_are_one_line(args, message, tmp_path, launch_in_process, monkeypatch):
  monkeypatch.chdir(helpers.ROOT)  # the config paths are relative to the repository
  args = [str(tmp_path / 'w') if a == 'W' else a for a in args]
  code, out, err = launch_in_process(*args)
  assert code == 2
  lines = [l for l in err.splitlines() if l.strip()]
  assert len(lines) == 1 and lines[0].startswith('error: ') and message in lines[0], err
  assert 'Traceback' not in out + err
  assert not os.path.exists(tmp_path / 'w')


def test_runs_saved_before_a_field_existed_still_resume():
  """A run config saved before `precision` existed means float32, the only
  precision there was; any other value is a different config."""
  old = config_lib.upgrade({'learning_rate': 0.01})  # as saved.read_run_config reads it
  defaults = config_lib.defaults()
  current = {'learning_rate': 0.01, **{f: defaults[f] for f in config_lib.ADDED_FIELDS}}
  assert current['precision'] == 'float32'
  assert config_lib.differing_fields(old, current) == []
  assert config_lib.differing_fields(old, {**current, 'precision': 'bfloat16'}) == [
      "precision: 'float32' -> 'bfloat16'"]


def test_an_older_run_config_is_upgraded_where_it_is_read(tmp_path):
  path = tmp_path / 'config.json'
  path.write_text(json.dumps({'learning_rate': 0.01}))
  defaults = get_config()
  assert saved.read_run_config(str(path)) == {
      'learning_rate': 0.01, **{f: defaults[f] for f in config_lib.ADDED_FIELDS}}
  assert set(config_lib.ADDED_FIELDS) <= set(config_lib.defaults())


def test_config_names_a_shipped_config_or_a_file(tmp_path, monkeypatch, capsys):
  """`--config default` (the `dash-jax` command, from any folder) is the
  shipped configs/default.py; a path stays a path; a name of nothing is one
  line."""
  from dash_jax.launch import cli
  shipped = cli.shipped_configs()
  assert shipped['default'] == os.path.join(helpers.ROOT, 'configs', 'default.py')
  assert 'paper' not in shipped and '__init__' not in shipped  # no get_config()
  monkeypatch.chdir(tmp_path)
  assert cli.resolve_config_arg(['x', '--config', 'default', '--workdir', 'w']) == [
      'x', '--config', shipped['default'], '--workdir', 'w']
  assert cli.resolve_config_arg(['x', '--config=cifar10_mlp:arg']) == [
      'x', f'--config={shipped["cifar10_mlp"]}:arg']
  assert cli.resolve_config('configs/default.py') == 'configs/default.py'
  (tmp_path / 'default').mkdir()  # a folder of that name (a workdir) does not count
  assert cli.resolve_config('default') == shipped['default']
  (tmp_path / 'synthetic').write_text('')  # a file of that name here wins
  assert cli.resolve_config('synthetic') == 'synthetic'
  with pytest.raises(SystemExit) as e:
    cli.resolve_config('defualt')
  assert e.value.code == 2
  err = capsys.readouterr().err
  assert err.count('\n') == 1 and 'did you mean "default"?' in err
