"""Tiny-ImageNet, SoTA recipe: ResNet-18 SoTA variant, lr 0.1, wd 5e-4.

Up to 260 epochs per experiment; lr warm-up over the first epoch, x0.2 at
epochs 60/120/160/200; horizontal flip + random resized crop (64x64).

    python launch.py --config configs/tiny_imagenet_resnet18_sota.py \
        --workdir runs/tiny_imagenet_resnet18_sota \
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
  paper.sota(config)
  return config
