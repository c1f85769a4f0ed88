"""Where a result came from: code version, libraries, device, precision, command.

Numbers can change in their last digits with library versions, backend,
processor and precision, so every result carries this block, and a report can
say which environment each row came from. Cheap: package metadata and jax
only (no TensorFlow or Flax import).
"""
from __future__ import annotations

import importlib.metadata
import os
import platform
import shlex
import socket
import subprocess
import sys
import time

from dash_jax import _version

DIST_NAME = 'dash-jax'
# Always recorded (None when absent); the optional ones only when installed.
LIBRARIES = ('jax', 'jaxlib', 'flax', 'optax', 'orbax-checkpoint', 'numpy')
OPTIONAL_LIBRARIES = ('tensorflow-datasets', 'tensorflow', 'tensorflow-cpu',
                      'jax-cuda12-plugin', 'jax-cuda12-pjrt', 'jax-cuda13-plugin',
                      'jax-cuda13-pjrt')
GIT_TIMEOUT_S = 5.0
NOT_RECORDED = 'environment not recorded'


def _now() -> str:
  return time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())  # ISO 8601, UTC


def _dist_version(name):
  try:
    return importlib.metadata.version(name)
  except importlib.metadata.PackageNotFoundError:
    return None


def _package_dir():
  return os.path.dirname(os.path.abspath(__file__))


def project_version() -> str:
  """The installed distribution's version, else the checkout's __version__."""
  return _dist_version(DIST_NAME) or _version.__version__


def _git(args, cwd):
  try:
    proc = subprocess.run(['git', *args], check=False, cwd=cwd, capture_output=True,
                          text=True, timeout=GIT_TIMEOUT_S)
  except (OSError, subprocess.SubprocessError):  # no git, or too slow
    return None
  return proc.stdout.strip() if proc.returncode == 0 else None


def git_state() -> dict | None:
  """Commit and dirty flag of the checkout holding this package; None outside one."""
  pkg = _package_dir()
  top = _git(['rev-parse', '--show-toplevel'], pkg)
  # A package installed into site-packages inside some other repository is
  # not that repository's code.
  if not top or not os.path.isdir(os.path.join(top, 'dash_jax')) or not os.path.samefile(
      os.path.join(top, 'dash_jax'), pkg):
    return None
  commit = _git(['rev-parse', 'HEAD'], top)
  if commit is None:
    return None
  status = _git(['status', '--porcelain', '--untracked-files=no'], top)
  return {'commit': commit, 'dirty': None if status is None else bool(status)}


def processor() -> str:
  """The CPU's marketing name where the OS tells it, else the architecture."""
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith('model name'):
          return line.split(':', 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine() or 'unknown'


def libraries() -> dict:
  libs = {'python': platform.python_version()}
  libs.update({name: _dist_version(name) for name in LIBRARIES})
  for name in OPTIONAL_LIBRARIES:
    version = _dist_version(name)
    if version:
      libs[name] = version
  return libs


def devices() -> dict:
  """The JAX backend the run computes on (initialises it, as any run does)."""
  import jax
  devs = jax.devices()
  return {'backend': jax.default_backend(), 'device_kind': devs[0].device_kind,
          'device_count': jax.device_count(), 'process_count': jax.process_count()}


def collect(precision: str = 'float32', argv=None) -> dict:
  """The provenance block of a run starting now; `stamp_end` closes it."""
  argv = sys.argv if argv is None else argv
  return {
      'version': project_version(),
      'git': git_state(),
      'libraries': libraries(),
      **devices(),
      'processor': processor(),
      'precision': str(precision),
      'host': socket.gethostname(),
      'command': shlex.join(str(a) for a in argv),
      'start_time': _now(),
      'end_time': None,
  }


def stamp_end(block: dict) -> dict:
  """Sets the block's end time (ISO 8601, UTC) and returns the block."""
  block['end_time'] = _now()
  return block


# Fields whose change can move the numbers (host, times and command cannot).
_COMPARED = ('backend', 'device_kind', 'device_count', 'processor', 'precision')


def environment_differences(saved: dict | None, current: dict | None) -> list[str]:
  """What differs between two blocks' environments, e.g. 'jax 0.4.30 -> 0.10.2'.

  For a one-line warning when a run resumes elsewhere; empty when either
  block is missing (nothing to compare)."""
  if not saved or not current:
    return []
  out = []
  old_libs, new_libs = saved.get('libraries') or {}, current.get('libraries') or {}
  for name in dict.fromkeys([*old_libs, *new_libs]):
    old, new = old_libs.get(name), new_libs.get(name)
    if old != new:
      out.append(f'{name} {old or "(absent)"} -> {new or "(absent)"}')
  for field in _COMPARED:
    old, new = saved.get(field), current.get(field)
    if old != new:
      out.append(f'{field.replace("_", " ")} {old} -> {new}')
  return out


def environment_key(block: dict | None) -> str:
  """Short label for grouping results, e.g. 'jax 0.10.2, cpu x1 (Intel Xeon), float32'."""
  if not block:
    return NOT_RECORDED
  libs = block.get('libraries') or {}
  jax_text = f"jax {libs.get('jax')}"
  if libs.get('jaxlib') and libs.get('jaxlib') != libs.get('jax'):
    jax_text += f" (jaxlib {libs['jaxlib']})"
  return (f"{jax_text}, {block.get('device_kind')} x{block.get('device_count')} "
          f"({block.get('processor')}), {block.get('precision')}")
