"""CIFAR-10, MLP (width 1000, depth 3): the paper's three-layer MLP setting.

Inputs are pixels in [0, 1], not normalised, as in the original code.

    python launch.py --config configs/cifar10_mlp.py \
        --workdir runs/cifar10_mlp \
        --config.data_dir=$HOME/tensorflow_datasets

One seed and every training type x {SGD, SAM}; pick a subset with e.g.
--config.train_type=cold,warm,sp,dash --config.optimizer=sgd
--config.seeds=2021,2022,2023.
"""
from configs import default, paper


def get_config():
  config = default.get_config()
  paper.protocol(config)
  config.dataset = 'cifar10'
  config.model = 'mlp'
  return config
