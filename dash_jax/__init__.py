"""dash-jax: DASH (Direction-Aware SHrinking) and the warm-start protocol in JAX."""

__version__ = '0.2.0'


def run(config, workdir, log=print):
  """Run a launch (every train_type x optimizer x seed) into `workdir`."""
  from dash_jax import runs
  return runs.run(config, workdir, log)
