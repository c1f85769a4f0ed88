"""Launch a config: python launch.py --config configs/default.py --workdir DIR.

Override any field: --config.train_type=dash --config.seeds=0. Re-running the
same command resumes unfinished runs and skips finished ones.
"""
import os

from dash_jax import signals

signals.install()  # Ctrl-C from the first moment on: one line, exit 130

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')  # before TensorFlow loads
# TF only reads data; its oneDNN banner would break one-line errors on stderr.
os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '0')

from absl import app, flags, logging
from ml_collections import config_flags

from dash_jax import cli

config_flags.DEFINE_config_file('config', None, 'Config file.', lock_config=True)
flags.DEFINE_string('workdir', None, 'Where runs, checkpoints and tables go.')
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # tfds reports every file it opens
  packed = flags.FLAGS.config.get('runs_per_device', 1)
  if packed > 1:  # before JAX starts: the processes share the device memory
    os.environ.setdefault('XLA_PYTHON_CLIENT_MEM_FRACTION', f'{0.9 / packed:.2f}')
  import dash_jax  # TensorFlow loads only to read a dataset, and hides the GPUs
  cli.run_or_fail(dash_jax.run, flags.FLAGS.config, flags.FLAGS.workdir)


if __name__ == '__main__':
  app.run(main, flags_parser=cli.parse_flags)
