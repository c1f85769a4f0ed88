"""Launch a config: python launch.py --config configs/default.py --workdir DIR.

Override any field: --config.train_type=dash --config.seeds=0. Re-running the
same command resumes unfinished runs and skips finished ones. The same as the
installed `dash-jax` command (dash_jax.launch.cli.main).
"""
from dash_jax import signals

signals.install()  # Ctrl-C from the first moment on: one line, exit 130

from dash_jax.launch import cli

if __name__ == '__main__':
  cli.main()
