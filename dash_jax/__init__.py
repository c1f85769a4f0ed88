"""dash-jax: DASH (Direction-Aware SHrinking) and the warm-start protocol in JAX."""

__version__ = '0.2.0'


def run(config, workdir):
  """Run a launch (every train_type x optimizer x seed) into `workdir`."""
  from dash_jax import protocol
  return protocol.run(config, workdir)
