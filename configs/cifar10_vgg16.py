"""CIFAR-10, VGG-16 with BatchNorm: the paper's VGG setting.

    python launch.py --config configs/cifar10_vgg16.py \
        --workdir runs/cifar10_vgg16 \
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
  config.model = 'vgg16'
  return config
