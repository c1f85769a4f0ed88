"""The Section 4 experiment's launch (config.experiment='synthetic'): its
config checked and turned into synthetic.SyntheticParams once, then the
simulation (dash_jax/synthetic.py)."""
from __future__ import annotations

import numbers

from dash_jax import synthetic
from dash_jax.errors import UserError
from dash_jax.synthetic import SyntheticParams


def _integer(config, name: str, minimum: int = 1) -> int:
  value = _field(config, name)
  if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
    raise UserError(f'config.{name} must be an integer >= {minimum}, got {value!r}; '
                     f'set --config.{name} to such an integer.')
  return int(value)


def _field(config, name: str):
  try:
    return config[name]
  except (KeyError, AttributeError):
    raise UserError(f'config.{name} is missing; add it to configs/synthetic.py.') from None


def _parse_seeds(value) -> tuple[int, ...]:
  fix = "set --config.seeds to distinct non-negative integers such as '0,1,2'."
  parts = value.split(',') if isinstance(value, str) else value
  parts = list(parts) if isinstance(parts, (list, tuple)) else [parts]
  seeds = []
  for part in parts:
    if isinstance(part, str) and part.strip().isdigit():
      part = int(part)
    if isinstance(part, bool) or not isinstance(part, numbers.Integral) or part < 0:
      raise UserError(f'config.seeds={value!r} is not a list of seeds; {fix}')
    seeds.append(int(part))
  if not seeds or len(set(seeds)) != len(seeds):
    raise UserError(f'config.seeds={value!r} must be non-empty and distinct; {fix}')
  return tuple(seeds)


def params_from_config(config) -> SyntheticParams:
  """Checks every field up front so a bad flag fails in one line, not mid-run."""
  num_classes = _integer(config, 'num_classes', minimum=2)
  num_features = _integer(config, 'num_features')
  counts = {name: _integer(config, name)
            for name in ('num_examples', 'num_experiments', 'gamma', 'tau', 'num_test')}
  for name in ('num_examples', 'num_test'):
    if counts[name] % num_classes:
      raise UserError(f'config.{name}={counts[name]} is not divisible by num_classes='
                       f'{num_classes}; set it to a multiple of num_classes.')
  if counts['tau'] > num_features:
    raise UserError(f"config.tau={counts['tau']} exceeds num_features={num_features}; "
                     f'set tau <= num_features.')
  probs = {}
  for name in ('prob_low', 'prob_high'):
    value = _field(config, name)
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value <= 1:
      raise UserError(f'config.{name} must be a number in [0, 1], got {value!r}; set it in [0, 1].')
    probs[name] = float(value)
  if probs['prob_low'] > probs['prob_high']:
    raise UserError(f"config.prob_low={probs['prob_low']} exceeds prob_high="
                     f"{probs['prob_high']}; set prob_low <= prob_high.")
  return SyntheticParams(num_classes=num_classes, num_features=num_features, **counts, **probs,
                         seeds=_parse_seeds(_field(config, 'seeds')))




def run(config, workdir: str, log=print) -> dict:
  """Checks every field, then simulates into `workdir`/synthetic."""
  del log
  return synthetic.run_synthetic(params_from_config(config), config.to_dict(), workdir)
