"""Tiny-ImageNet, ResNet-18: the paper's standard setting.

Built once, offline, from tiny-imagenet-200.zip in --config.manual_dir.

    python launch.py --config configs/tiny_imagenet_resnet18.py \
        --workdir runs/tiny_imagenet_resnet18 \
        --config.data_dir=$HOME/tensorflow_datasets \
        --config.manual_dir=$HOME/Downloads  # holds tiny-imagenet-200.zip

One seed and every training type x {SGD, SAM}; pick a subset with e.g.
--config.train_type=cold,warm,sp,dash --config.optimizer=sgd
--config.seeds=2021,2022,2023.
"""
from configs import default, paper


def get_config():
  config = default.get_config()
  paper.protocol(config)
  config.dataset = 'tiny_imagenet'
  config.model = 'resnet18'
  return config
