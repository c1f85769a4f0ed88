"""Synthetic experiment of the paper's Section 4: discrete feature learning.

No network and no data download: random, warm and ideal training of a
combinatorial feature-learning model (dash_jax/synthetic.py). The default
(10 seeds, 50 experiments) runs in seconds on a 2-core CPU.

    python launch.py --config configs/synthetic.py --workdir runs/synthetic
    python launch.py --config configs/synthetic.py --workdir runs/syn_small \
        --config.seeds=0,1 --config.num_experiments=10

Writes WORKDIR/synthetic/results.json and WORKDIR/synthetic/synthetic.png.
"""
import ml_collections


def get_config():
  config = ml_collections.ConfigDict()
  config.experiment = 'synthetic'
  config.seeds = '0,1,2,3,4,5,6,7,8,9'  # comma-separated

  # Data: each arriving chunk is split evenly over the classes.
  config.num_examples = 1000  # examples arriving per experiment (N)
  config.num_experiments = 50  # chunks, one training run each (J)
  config.num_classes = 2  # C
  config.num_features = 50  # features per class (numfeat)
  config.prob_low = 0.0  # feature probabilities ~ U[prob_low, prob_high]
  config.prob_high = 0.2
  config.num_test = 10000  # test examples per seed, split evenly over classes

  # Learning rule.
  config.gamma = 50  # occurrences among non-zero-gradient examples to learn a feature
  config.tau = 3  # learned features that give an example zero gradient
  return config
