"""CIFAR-100, ResNet-18: the paper's standard setting.

    python launch.py --config configs/cifar100_resnet18.py \
        --workdir runs/cifar100_resnet18 \
        --config.data_dir=$HOME/tensorflow_datasets

One seed and every training type x {SGD, SAM}; pick a subset with e.g.
--config.train_type=cold,warm,sp,dash --config.optimizer=sgd
--config.seeds=2021,2022,2023.
"""
from configs import default, paper


def get_config():
  config = default.get_config()
  paper.protocol(config)
  config.dataset = 'cifar100'
  config.model = 'resnet18'
  return config
