"""Digits: scikit-learn's bundled 8x8 digits with 20% training label noise.

The project's first offline demo (the default before MNIST-1D): an MLP
64-512-BN-ReLU-10, SGD lr 0.01, 20 chunks. Warm-starting loses to cold here,
but DASH does not beat cold (docs/default_choice.md): an MLP on 8x8 digits
has little that warm-starting can get wrong. Kept for its speed (under a
minute on a 2-core CPU) and for the tests, which run on it.

    python launch.py --config configs/digits.py --workdir runs/digits
"""
from configs import default


def get_config():
  config = default.get_config()
  config.dataset = 'digits'
  config.label_noise = 0.2  # memorisable noise: what makes warm-starting hurt
  config.width = 512
  config.depth = 2
  config.learning_rate = 0.01
  config.num_chunks = 20
  config.batch_size = 128
  config.runs_per_device = 1  # one process (the tests launch this config)
  return config
