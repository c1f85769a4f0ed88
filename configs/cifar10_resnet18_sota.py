"""CIFAR-10, SoTA recipe: ResNet-18 SoTA variant, lr 0.1, wd 5e-4.

Up to 260 epochs per experiment; lr warm-up over the first epoch, x0.2 at
epochs 60/120/160/200; random crop (pad 4) + horizontal flip.

    python launch.py --config configs/cifar10_resnet18_sota.py \
        --workdir runs/cifar10_resnet18_sota \
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
  config.model = 'resnet18'
  paper.sota(config)
  return config
