"""Every field's default, read from configs/default.py: the one place they live.

Its own module so that readers of single fields (data/user.py) and the config
checks (config.py) share it without importing each other.
"""
from __future__ import annotations

import functools
import importlib.util
import os

from dash_jax.errors import UserError

DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                              'configs', 'default.py')


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
