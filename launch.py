"""Launch a config: python launch.py --config configs/default.py --workdir DIR.

Override any field: --config.train_type=dash --config.seeds=0
"""
import os
import sys

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')  # before TensorFlow loads

from absl import app, flags, logging
from ml_collections import config_flags

config_flags.DEFINE_config_file('config', None, 'Config file.', lock_config=True)
flags.DEFINE_string('workdir', None, 'Where runs, checkpoints and tables go.')
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # tfds reports every file it opens
  import tensorflow as tf
  tf.config.set_visible_devices([], 'GPU')  # TF only reads data; JAX owns the GPU
  import dash_jax
  from dash_jax.errors import UserError
  try:
    dash_jax.run(flags.FLAGS.config, flags.FLAGS.workdir)
  except (UserError, ValueError) as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)


if __name__ == '__main__':
  app.run(main)
