"""Data parallelism over the local accelerators, one code path for 1..N devices.

A run sits inside a mesh with one axis, 'batch', over the devices it uses.
Data and train state are replicated; inside the jitted steps each batch is
constrained to be split along 'batch', and XLA's SPMD partitioner turns the
rest (per-device forward/backward, gradient all-reduce, BatchNorm statistics
over the global batch) into one program. The numbers are those of one device
up to float summation order. On one device the same constraints are no-ops.

Several hosts (dash_jax/launch/hosts.py): each process is data-parallel
over its own local devices.
"""
from __future__ import annotations

import contextlib
import os
import textwrap

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

from dash_jax.errors import UserError

AXIS = 'batch'


def check_platform() -> None:
  """UserError, naming JAX_PLATFORMS, when JAX cannot start a backend (an
  unknown platform, or cuda on a machine without one): before any compute."""
  try:
    jax.devices()
  except (RuntimeError, AssertionError) as e:
    asked = os.environ.get('JAX_PLATFORMS', '')
    why = textwrap.shorten(str(e), 200, placeholder=' ...') or 'no backend could start'
    var = f'JAX_PLATFORMS={asked}' if asked else 'JAX (JAX_PLATFORMS unset)'
    raise UserError(f'{var}: JAX cannot start that platform ({why}); unset JAX_PLATFORMS '
                    f'or set it to a platform this machine has (cpu; cuda needs a GPU and '
                    f'jax[cuda])') from None


def make_mesh(num_devices: int = 0) -> Mesh:
  """A 1-D mesh over the first `num_devices` local devices (0 = all)."""
  devices = jax.local_devices()
  if num_devices > len(devices):
    raise UserError(f'config.devices={num_devices} but only {len(devices)} '
                    f'{devices[0].platform} device(s) are visible; use '
                    f'--config.devices=0 (all) or a smaller number')
  devices = devices[:num_devices or len(devices)]
  return Mesh(np.array(devices), (AXIS,), axis_types=(AxisType.Auto,))


@contextlib.contextmanager
def use_mesh(mesh: Mesh):
  """Make `mesh` the context of every jit traced inside (cache keys include it)."""
  with jax.set_mesh(mesh):
    yield mesh


def current_mesh() -> Mesh:
  """The mesh set by `use_mesh`, else one over the first device."""
  mesh = jax.sharding.get_mesh()
  return make_mesh(1) if mesh.empty else mesh


def replicate(tree, mesh: Mesh):
  """Every leaf in full on every device of the mesh."""
  return jax.device_put(tree, NamedSharding(mesh, P()))


def shard_batch(x):
  """Inside jit: split x's leading (example) axis over the mesh's devices.

  Left replicated where no mesh is set or the batch does not divide evenly
  (e.g. a DASH direction batch of one chunk), which changes speed, not numbers.
  """
  mesh = jax.sharding.get_abstract_mesh()
  if mesh.empty or AXIS not in mesh.axis_names:
    return x
  size = mesh.shape[AXIS]
  if size == 1 or x.shape[0] % size:
    return x
  return jax.lax.with_sharding_constraint(x, P(AXIS))
