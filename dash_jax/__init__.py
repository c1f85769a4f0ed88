"""dash-jax: DASH (Direction-Aware SHrinking) and the warm-start protocol in JAX."""

from dash_jax._version import __version__

__all__ = ['__version__', 'run']


def run(config, workdir, log=print):
  """Run a launch (every train_type x optimizer x seed) into `workdir`."""
  from dash_jax.launch import runs
  return runs.run(config, workdir, log)
