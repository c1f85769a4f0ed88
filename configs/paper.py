"""The paper's protocol defaults, shared by the per-setting configs.

Not a setting itself: each configs/<dataset>_<model>[_sota].py imports
configs/default.py, applies `protocol` and names its dataset and model.
"""

TRAIN_TYPES = 'cold,warm,warm_rm,reset,l2_init,sp,dash'  # all the paper compares


def protocol(config):
  """Original code's defaults: 50 chunks, train to 99.9% train accuracy,
  SGD lr 1e-3 momentum 0.9, batch 128, clean labels, seed 2021."""
  config.train_type = TRAIN_TYPES
  config.optimizer = 'sgd,sam'
  config.seeds = '2021'
  config.label_noise = 0.0
  config.num_chunks = 50
  config.max_epoch = 10000
  config.converge_acc = 0.999
  config.learning_rate = 0.001
  config.momentum = 0.9
  config.weight_decay = 0.0
  config.batch_size = 128
  config.test_batch_size = 256
  config.runs_per_device = 1  # one process; pack runs with --config.runs_per_device=N
  config.width = 1000  # mlp only
  config.depth = 3  # mlp only: the paper's three-layer MLP (reset redraws fc3)
  return config


def sota(config):
  """The SoTA recipe's hyper-parameters (README of the original code)."""
  config.sota = True
  config.model = 'resnet18'  # runs as resnet18_sota
  config.learning_rate = 0.1
  config.weight_decay = 5e-4
  config.max_epoch = 260
  return config
