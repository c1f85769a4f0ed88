"""Default: the warm-start protocol on MNIST-1D, where DASH wins.

MNIST-1D (Greydanus & Kobak, ICML 2024; 4,000 training and 1,000 test
signals of length 40, 10 classes, generated offline by the mnist1d package),
clean labels, an MLP 40-512-BN-ReLU-512-BN-ReLU-10 (depth 3), SGD lr 0.05,
10 chunks, cold, warm, S&P and DASH over seeds 0, 1, 2. Chosen by paired
measurement over 8 seeds among widths, depths, learning rates, chunk counts
and label noise (docs/default_choice.md): DASH above cold and warm on every
seed, warm below cold on average, DASH and S&P within seed noise, in a few
minutes on a 2-core CPU.

    python launch.py --config configs/default.py --workdir runs/default
    python launch.py --config configs/default.py --workdir runs/one \
        --config.train_type=dash --config.seeds=0

Every field the project knows is declared here; other configs import this
one and override fields. Any field that changes a run's numbers may be given
as a list (a tuple here, or a,b on the command line): one launch runs the
grid, e.g. --config.dash_lambda=0.1,0.3,0.5 --config.dash_alpha=0.3,1.0.
"""
import ml_collections


def get_config():
  config = ml_collections.ConfigDict()
  config.experiment = 'incremental'  # or 'synthetic' (configs/synthetic.py)

  # What to compare: every combination of these runs in one launch.
  config.train_type = 'cold,warm,sp,dash'  # comma-separated names
  config.optimizer = 'sgd'  # 'sgd', 'sam' or 'sgd,sam'
  config.seeds = '0,1,2'  # comma-separated; one run per seed of each combination

  # Data.
  config.dataset = 'mnist1d'  # or digits (configs/digits.py), cifar10, ..., your data
  config.data_dir = ''  # where datasets are read and kept; '' = $TFDS_DATA_DIR or ~/tensorflow_datasets
  config.manual_dir = ''  # where manually downloaded archives live (tiny_imagenet);
                          # '' = <data_dir>/downloads/manual
  config.download = False  # True: let tfds download + prepare a missing dataset
  config.label_noise = 0.0  # fraction of TRAINING labels re-drawn uniformly
  # 'auto' (the dataset's rule), 'standard' (mean/std of the training split:
  # per channel for images, per feature for float features), 'unit' (pixels
  # to [0, 1]) or 'none' (as stored)
  config.normalize = 'auto'
  config.num_train = 0  # >0: keep a seeded random subset of the training split
  # Your own data (README, 'Your data'): dataset = 'PATH.npz' (x_train, y_train,
  # x_test, y_test), 'tfds:NAME[/CONFIG]' or 'folder:PATH' (train/CLASS/*.png,
  # test/CLASS/*). These fields apply to one kind each:
  config.train_split = 'train'  # tfds: a tfds split string, e.g. 'train[:90%]'
  config.test_split = 'test'  # tfds: e.g. 'validation' or 'train[90%:]'
  config.image_size = 0  # folder: resize every image to NxN; 0 = keep (one size)
  config.num_classes = 0  # npz: classes K (labels 0..K-1); 0 = largest label + 1

  # Model.
  config.model = 'mlp'  # 'mlp', 'resnet18' or 'vgg16' (docs/models_and_data.md)
  config.width = 512  # the MLP's hidden units per layer
  config.depth = 3  # Linear layers: depth - 1 hidden Linear-BN-ReLU, then the head
  # Compute dtype: 'float32' (the paper's numbers) or 'bfloat16' (conv/dense
  # inputs and activations; parameters, BatchNorm statistics, logits and
  # loss stay float32).
  config.precision = 'float32'

  # Protocol.
  config.num_chunks = 10  # experiments: chunk k arrives at experiment k
  # How the training split is cut into chunks: 'random' (the paper's: a seeded
  # permutation) or 'given' (the data's own order, chunk k its k-th slice: a
  # stream replayed as it arrived). Changes the numbers: a science field.
  config.chunk_order = 'random'
  config.max_epoch = 500  # at most this many epochs per experiment
  config.converge_acc = 0.999  # an experiment ends at this running train accuracy

  # Optimisation (PyTorch SGD semantics).
  config.learning_rate = 0.05  # SGD's step size
  config.momentum = 0.9  # SGD momentum
  config.weight_decay = 0.0  # L2 penalty added to the gradient, as PyTorch's SGD
  config.batch_size = 128  # training examples per step
  # An epoch's last batch of n mod batch_size examples: 'keep' (the original's
  # drop_last=False), 'drop_small' (leave out one under 32 examples) or
  # 'balanced' (ceil(n / batch_size) batches of near-equal size); the last
  # two are deviations (docs/last_batch.md). Changes the numbers: a science field.
  config.last_batch = 'keep'
  config.test_batch_size = 256  # examples per evaluation step (no effect on accuracy)
  config.rho = 0.1  # SAM radius
  config.sam_bn_second_pass = True  # SAM's 2nd pass also updates BN stats

  # SoTA recipe (configs/*_sota.py): resnet18 -> resnet18_sota, lr warm-up over
  # each experiment's first epoch, then x sota_gamma at each milestone epoch
  # (restarting every experiment), per-dataset augmentation in the train step.
  config.sota = False
  config.sota_milestones = '60,120,160,200'  # sota: epochs at which the lr drops
  config.sota_gamma = 0.2  # sota: the lr's factor at each milestone

  # Training-type hyper-parameters.
  config.dash_lambda = 0.3  # DASH: the least a weight is shrunk to (its factor's floor)
  config.dash_alpha = 0.3  # DASH: the EMA rate of the gradient direction over batches
  config.dash_per = 'kernel'  # 'kernel' (original code) or 'neuron' (paper)
  config.sp_lambda = 0.3  # Shrink & Perturb: weights scaled by this
  config.sp_sigma = 0.01  # Shrink & Perturb: std of the noise added
  config.l2_init_lambda = 1e-2  # L2 Init: strength of the pull towards the initial weights
  config.l2_init_form = 'sum_norm_sq'  # original code; or 'sq_dist' (Kumar et al.)
  # ReDo (Sokar et al. 2023), before each experiment j >= 2 on its data: a unit
  # whose mean |activation| over its layer's mean is <= redo_tau is re-drawn.
  config.redo_tau = 0.1  # dormancy threshold (the paper's DQN value); 0 = off
  # Continual Backprop (Dohare et al. 2024), before each experiment j >= 2:
  # per layer, floor(rate x units x last experiment's steps) lowest-utility units.
  config.cbp_replacement_rate = 1e-4  # units replaced per unit per step; 0 = off
  config.cbp_maturity_threshold = 100  # steps a unit trains before it may be replaced

  # Execution.
  config.epoch_mode = 'auto'  # 'auto', 'loop' (jitted step) or 'scan'
  # Steps per host round trip inside a compiled ('scan') epoch; 0 = auto
  # (1 on CPU, 16 on accelerators: dash_jax/setup.py).
  config.scan_block = 0
  config.devices = 0  # data-parallel over this many local devices; 0 = all
  config.vmap_seeds = False  # train the listed seeds together as one program
  # Processes of this launch sharing the local devices, each taking the runs
  # nobody holds (several runs packed on one GPU); 1 = this process alone.
  # The default launch packs two: each small MLP run computes no faster on two
  # cores than on one, so two runs at once take 3m58s instead of 6m29s on a
  # 2-core CPU (BENCHMARKS.md). The other configs set 1.
  config.runs_per_device = 2
  # Compiled programs kept on disk, so a relaunch skips XLA compilation;
  # '' = off. At most compile_cache_gb, least recently used dropped first.
  config.compile_cache_dir = '~/.cache/dash_jax/xla'
  config.compile_cache_gb = 2.0  # the compile cache's size limit
  # Several processes / hosts share the launch's runs (docs/gpu_and_speed.md, 'Several hosts').
  config.coordinator = ''  # '' = one process; 'auto' (SLURM, MPI...); 'HOST:PORT'
  config.num_processes = 1  # with coordinator='HOST:PORT'
  config.process_id = 0  # with coordinator='HOST:PORT': this process, 0-based
  config.checkpoint_every_epochs = 25  # also after every experiment; 0 = only then
  config.keep_checkpoints = 3  # checkpoints kept per run
  config.checkpoint_min_interval_s = 10.0  # skip saves closer than this (0 = none)
  config.allow_config_change = False  # redo runs made with another config

  # What a run shows (never changes its numbers).
  config.progress = True  # tqdm bars over experiments and epochs (terminal only)
  config.tensorboard = True  # scalars in each run folder: tensorboard --logdir WORKDIR
  config.diagnostics = False  # the original's extra metrics (dash_jax/diagnostics.py)
  config.wandb = False  # also log to Weights & Biases (pip install wandb)
  return config
