"""Several hosts: the protocol's runs are independent, so a launch over many
processes splits its runs (training type x optimizer x seed) among them,
each process data-parallel over its own local devices (parallel.py);
`config.coordinator` makes every process call `jax.distributed.initialize`
first, and the main process writes the launch's tables once all runs are done.
"""
from __future__ import annotations

import dataclasses

import jax


@dataclasses.dataclass(frozen=True)
class Hosts:
  """This process's place among the launch's processes (one when alone)."""
  index: int = 0
  count: int = 1

  @property
  def is_main(self) -> bool:
    return self.index == 0

  def share(self, items: list) -> list:
    """This process's part of the launch's runs (round robin)."""
    return items[self.index::self.count]

  def barrier(self, name: str) -> None:
    if self.count > 1:
      from jax.experimental import multihost_utils
      multihost_utils.sync_global_devices(name)


def initialize(config) -> Hosts:
  """config.coordinator: '' = one process; 'auto' = a cluster JAX detects
  (SLURM, Open MPI, ...); 'HOST:PORT' with config.num_processes and
  config.process_id set per process."""
  coordinator = config.coordinator
  if not coordinator:
    return Hosts()
  if not jax.distributed.is_initialized():
    if coordinator == 'auto':
      jax.distributed.initialize()
    else:
      jax.distributed.initialize(coordinator, num_processes=config.num_processes,
                                 process_id=config.process_id)
  return Hosts(jax.process_index(), jax.process_count())
