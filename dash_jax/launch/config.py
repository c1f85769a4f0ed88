"""The launch's config: every field's default (configs/default.py), the
field tables, and the checks that run before any compute, so a typo costs
seconds."""
from __future__ import annotations

import difflib
import functools
import importlib.util
import os

from dash_jax import batches
from dash_jax.setup import CHUNK_ORDERS
from dash_jax.errors import UserError

# ------------------------------------------------ defaults (configs/default.py)

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_CONFIG = os.path.join(_REPO, 'configs', 'default.py')


@functools.lru_cache(maxsize=None)
def config_file_dict(name: str) -> dict:
  """configs/NAME.py's config as a dict (its fields and their values)."""
  path = os.path.join(os.path.dirname(DEFAULT_CONFIG), f'{name}.py')
  spec = importlib.util.spec_from_file_location(f'_dash_jax_{name}_config', path)
  module = importlib.util.module_from_spec(spec)
  try:
    spec.loader.exec_module(module)
  except FileNotFoundError:
    raise UserError(f'{path} is missing; the defaults of every field live in configs/ '
                    f'(run from a checkout of the repository)') from None
  return module.get_config().to_dict()


def defaults() -> dict:
  """Every field's default: configs/default.py's config, as a dict."""
  return dict(config_file_dict('default'))


OPTIMIZERS = ('sgd', 'sam')
EPOCH_MODES = ('auto', 'loop', 'scan')
NORMALIZE = ('auto', 'standard', 'unit', 'none')
L2_INIT_FORMS = ('sum_norm_sq', 'sq_dist')


# Fields that change how a run executes, never its numbers: a workdir's runs
# may be resumed with other values of these.
EXECUTION_FIELDS = frozenset({
    'data_dir', 'manual_dir', 'download', 'epoch_mode', 'devices', 'vmap_seeds',
    'coordinator', 'num_processes', 'process_id', 'compile_cache_dir',
    'compile_cache_gb', 'checkpoint_every_epochs', 'keep_checkpoints',
    'checkpoint_min_interval_s', 'allow_config_change', 'progress', 'tensorboard',
    'diagnostics', 'scan_block', 'runs_per_device', 'wandb'})

# Fields that take a comma-separated list of their own (the grid's base axes,
# and sota_milestones, whose one value is a list): never a sweep.
LIST_FIELDS = frozenset({'train_type', 'optimizer', 'seeds', 'sota_milestones'})
# Fields a launch needs one value of: execution fields, the experiment, and
# what the launch's one dataset load reads.
UNSWEEPABLE_FIELDS = EXECUTION_FIELDS | {'experiment', 'dataset', 'num_train', 'train_split',
                                         'test_split', 'image_size', 'num_classes'}
# A run config's list of its swept fields (grid.run_fields writes it).
SWEPT = 'swept'
# Swept fields in run names: these first, by these names; others by field
# name, alphabetically (a fixed order: a relaunch finds the same folders).
SHORT_NAMES = {'dash_lambda': 'lam', 'dash_alpha': 'alpha', 'sp_lambda': 'splam',
               'sp_sigma': 'spsig', 'l2_init_lambda': 'l2lam', 'learning_rate': 'lr',
               'label_noise': 'noise', 'redo_tau': 'tau', 'cbp_replacement_rate': 'cbprate',
               'cbp_maturity_threshold': 'cbpmat'}


def field_order(field: str):
  """Sort key of swept fields in names, tables and figures."""
  order = list(SHORT_NAMES)
  return (order.index(field), '') if field in order else (len(order), field)


# Written into run configs by earlier versions; implied by `seeds` there.
_DERIVED_FIELDS = frozenset({'seed'})
# Result-affecting fields added since runs were first saved: absent from an
# older run's config means its default (upgrade), so older workdirs still resume.
ADDED_FIELDS = ('precision', 'chunk_order', 'train_split', 'test_split', 'image_size',
                'num_classes', 'redo_tau', 'cbp_replacement_rate', 'cbp_maturity_threshold',
                'last_batch')
# Derived run-config field: a file dataset's sha256 (data.fingerprint).
DATASET_SHA256 = 'dataset_sha256'
def upgrade(saved: dict) -> dict:
  """A run config read from disk, with each field added since it was saved
  (ADDED_FIELDS) set to its default: the one place an older run's config
  meets today's fields."""
  missing = [f for f in ADDED_FIELDS if f not in saved]
  if not missing:
    return saved
  default = defaults()
  return {**saved, **{f: default[f] for f in missing}}


def differing_fields(saved: dict, current: dict) -> list[str]:
  """'field: old -> new' for each result-affecting field that differs
  (`saved` as upgrade returns it; a file dataset's contents: 'contents of
  FILE changed: sha256 old -> new')."""
  out = []
  for field in sorted(set(saved) | set(current)):
    if field in EXECUTION_FIELDS or field in _DERIVED_FIELDS:
      continue
    old, new = saved.get(field, '(absent)'), current.get(field, '(absent)')
    if old == new:
      continue
    if field == DATASET_SHA256 and saved.get('dataset') == current.get('dataset'):
      out.append(f'contents of {current.get("dataset")} changed: sha256 {str(old)[:16]}... '
                 f'-> {str(new)[:16]}...')
    else:
      out.append(f'{field}: {old!r} -> {new!r}')
  return out


def _synthetic_fields() -> set:
  """The fields of the synthetic experiment: configs/synthetic.py's."""
  try:
    return set(config_file_dict('synthetic'))
  except UserError:  # no configs/synthetic.py: nothing to check against
    return set()


def check_known_fields(config, where='the config') -> None:
  """UserError for a field no experiment reads (a misspelling in a config
  file is refused as one on the command line is), with the closest name."""
  experiment = config.get('experiment', 'incremental')
  if experiment == 'incremental':
    known = set(defaults())
  elif experiment == 'synthetic':
    known = _synthetic_fields()
  else:
    return  # an unknown experiment is refused by name later
  if not known:
    return
  unknown = sorted(set(config.keys()) - known - {DATASET_SHA256, SWEPT})
  if unknown:
    close = difflib.get_close_matches(unknown[0], sorted(known), n=1)
    hint = f'; did you mean "{close[0]}"?' if close else ''
    raise UserError(f'{where} sets unknown config field {unknown[0]!r}{hint} (fields and '
                    f'their defaults: configs/default.py)')


def parse_list(value, cast=str, field='value') -> list:
  """'a,b' / 'a' / 3 / [a, b] -> list, as config flags hand them over."""
  if isinstance(value, (list, tuple)):
    items = list(value)
  else:
    items = [s.strip() for s in str(value).split(',') if s.strip()]
  try:
    out = [cast(v) for v in items]
  except ValueError:
    raise UserError(f'config.{field}={value!r} is not a comma-separated list '
                    f'of {cast.__name__}; e.g. --config.{field}=0,1,2') from None
  if not out:
    raise UserError(f'config.{field} is empty; give at least one value')
  if len(set(out)) != len(out):
    raise UserError(f'config.{field}={value!r} lists a value twice; list each once')
  return out


def _is_list(value) -> bool:
  return isinstance(value, (list, tuple))


def set_sweep(config, field: str, values) -> None:
  """config.FIELD = tuple(values): a swept field (any declared type), or a
  single value when `values` is not a list."""
  with config.unlocked():  # a float field cannot hold a tuple: re-declare it
    del config[field]
    config[field] = tuple(values) if _is_list(values) else values


def sweeps(config) -> dict[str, list]:
  """{field: its values} for every swept field (one holding a list or tuple),
  in name order (SHORT_NAMES first); raises UserError for a list that
  is empty, repeats a value, holds an empty or nested element, or sits on a
  field that takes one value."""
  out = {}
  for field in sorted(config.keys(), key=field_order):
    values = config[field]
    if field in LIST_FIELDS or not _is_list(values):
      continue
    if field in UNSWEEPABLE_FIELDS:
      why = ('the launch loads one dataset' if field not in EXECUTION_FIELDS | {'experiment'}
             else 'it sets up the launch, not a run')
      raise UserError(f'config.{field} takes one value, not a list ({why}); '
                      f'launch once per value, each into its own --workdir')
    shown = ','.join(map(str, values))
    if not values:
      raise UserError(f'config.{field} is an empty list; give at least one value')
    for v in values:
      if _is_list(v) or isinstance(v, dict) or v is None or (isinstance(v, str) and not v.strip()):
        raise UserError(f'config.{field}={shown!r} holds an empty or nested '
                        f'element {v!r}; list single values, e.g. '
                        f'--config.{field}=0.1,0.5')
    if len(set(values)) != len(values):
      raise UserError(f'config.{field}={shown!r} lists a value twice; list each once')
    out[field] = list(values)
  if out and config.experiment != 'incremental':
    raise UserError(f'config.{next(iter(out))} is a list, but only the incremental '
                    f'experiment sweeps fields; give one value')
  return out


def single(config, values: dict):
  """A copy of `config` with each swept field set to values[field] (default:
  its first value)."""
  config = config.copy_and_resolve_references()
  for field, vals in sweeps(config).items():
    set_sweep(config, field, values.get(field, vals[0]))
  return config


def _choice(config, field, valid):
  values = (parse_list(config[field], str, field) if field in LIST_FIELDS
            else [config[field]])
  for v in values:
    if v not in valid:
      raise UserError(f'unknown {field} {v!r}; valid: {", ".join(sorted(valid))}')


def _in_range(config, field, low, high, low_open=True):
  v = config[field]
  ok = (low < v if low_open else low <= v) and v <= high
  if not ok:
    lo = '(' if low_open else '['
    raise UserError(f'config.{field}={v} is outside {lo}{low}, {high}]; '
                    f'set --config.{field} inside it')


def _positive(config, field):
  if not config[field] > 0:
    raise UserError(f'config.{field}={config[field]} must be > 0; '
                    f'set --config.{field} to a positive value')


def validate(config) -> None:
  """Raises UserError naming the first bad field and how to fix it; a swept
  field has each of its values checked."""
  check_known_fields(config)
  swept = sweeps(config)
  _validate_single(single(config, {}))
  for field, values in swept.items():
    for v in values[1:]:
      _validate_single(single(config, {field: v}))
  if config.wandb:
    try:
      import wandb  # noqa: F401
    except ImportError:
      raise UserError('config.wandb=True needs the wandb package: pip install wandb '
                      '(or drop --config.wandb)') from None


def _validate_single(config) -> None:
  from dash_jax import dash, data, models, training_types  # registries
  _choice(config, 'train_type', training_types.TRAINING_TYPES)
  _choice(config, 'optimizer', OPTIMIZERS)
  if any(not 0 <= s < 2**32 for s in parse_list(config.seeds, int, 'seeds')):
    raise UserError(f'config.seeds={config.seeds!r} must list integers in [0, 2**32); '
                    f'e.g. --config.seeds=0,1,2')
  # a registered name, PATH.npz, tfds:NAME or folder:PATH
  check_data_fields(config, data.kind(config.dataset)[0])
  _choice(config, 'chunk_order', CHUNK_ORDERS)
  _choice(config, 'last_batch', batches.LAST_BATCH_MODES)
  _choice(config, 'model', models.MODELS)
  _choice(config, 'epoch_mode', EPOCH_MODES)
  _choice(config, 'normalize', NORMALIZE)
  _choice(config, 'dash_per', dash.PERS)
  _choice(config, 'l2_init_form', L2_INIT_FORMS)
  _choice(config, 'precision', models.PRECISIONS)
  for field in ('dash_lambda', 'dash_alpha', 'sp_lambda', 'converge_acc'):
    _in_range(config, field, 0.0, 1.0)
  _in_range(config, 'cbp_replacement_rate', 0.0, 1.0, low_open=False)
  _in_range(config, 'label_noise', 0.0, 1.0, low_open=False)
  if config.sota:
    _in_range(config, 'sota_gamma', 0.0, 1.0)
    if any(m < 1 for m in parse_list(config.sota_milestones, int, 'sota_milestones')):
      raise UserError(f'config.sota_milestones={config.sota_milestones!r} must list '
                      f'epochs >= 1, e.g. --config.sota_milestones=60,120,160,200')
  _in_range(config, 'momentum', 0.0, 1.0, low_open=False)
  for field in ('learning_rate', 'batch_size', 'test_batch_size', 'max_epoch',
                'num_chunks', 'width', 'depth'):
    _positive(config, field)
  _positive(config, 'keep_checkpoints')
  _positive(config, 'runs_per_device')
  if config.runs_per_device > 1 and config.coordinator:
    raise UserError('config.runs_per_device > 1 packs one machine\'s runs; with '
                    '--config.coordinator start several processes yourself (or '
                    'launch the same command several times: they share the runs)')
  for field in ('weight_decay', 'rho', 'sp_sigma', 'l2_init_lambda', 'num_train',
                'checkpoint_every_epochs', 'devices', 'compile_cache_gb',
                'checkpoint_min_interval_s', 'scan_block', 'redo_tau', 'cbp_maturity_threshold'):
    if config[field] < 0:
      raise UserError(f'config.{field}={config[field]} must be >= 0')
  if config.coordinator not in ('', 'auto'):
    _positive(config, 'num_processes')
    if not 0 <= config.process_id < config.num_processes:
      raise UserError(f'config.process_id={config.process_id} is outside [0, '
                      f'{config.num_processes}); give each process its own id')


def check_data_fields(config, kind: str) -> None:
  """Fields that only one kind of dataset reads (data.user.KIND_FIELDS)
  must keep their defaults for the others."""
  from dash_jax.data import user
  default = defaults()
  for field, reader in user.KIND_FIELDS.items():
    if config[field] != default[field] and kind != reader:
      raise UserError(f'config.{field}={config[field]!r} applies to {reader} datasets only '
                      f'(config.dataset={config.dataset!r}); leave it at {default[field]!r}')
  if config.image_size < 0 or config.num_classes < 0:
    raise UserError('config.image_size and config.num_classes must be >= 0 (0 = from the data)')
