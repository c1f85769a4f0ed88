"""Every field's default, read from configs/default.py: the one place they live.

Its own module so that readers of single fields (data/user.py) and the config
checks (config.py) share it without importing each other.
"""
from __future__ import annotations

import functools
import importlib.util
import os

from dash_jax.errors import UserError

DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                              'configs', 'default.py')


@functools.lru_cache(maxsize=None)
def _default_dict() -> dict:
  spec = importlib.util.spec_from_file_location('_dash_jax_default_config', DEFAULT_CONFIG)
  module = importlib.util.module_from_spec(spec)
  try:
    spec.loader.exec_module(module)
  except FileNotFoundError:
    raise UserError(f'{DEFAULT_CONFIG} is missing; the defaults of every field live '
                    f'there (run from a checkout of the repository)') from None
  return module.get_config().to_dict()


def defaults() -> dict:
  """Every field's default: configs/default.py's config, as a dict."""
  return dict(_default_dict())
