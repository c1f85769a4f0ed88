"""Typed settings of one run: frozen records the launch layer builds once
from the run's config (dash_jax/launch/grid.py), and the core reads.

Each part holds the values one stage needs, under the config's field names,
so a core function takes the part it reads and never the launch's config. Nothing
is derived during a run: the resolved model, a file dataset's hash and the
swept fields are settings too.
"""
from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class ModelSettings:
  """What builds the network (models.ModelSpec.build)."""
  model: str  # resolved: the SoTA recipe's resnet18 is resnet18_sota
  width: int  # MLP hidden units
  depth: int  # MLP hidden layers
  precision: str  # models.PRECISIONS


@dataclasses.dataclass(frozen=True)
class DataSettings:
  """What finds and loads the dataset (data.load); one per launch."""
  dataset: str  # a registered name, npz:PATH, tfds:NAME or folder:PATH
  data_dir: str
  manual_dir: str
  download: bool
  num_train: int  # 0 = every training example
  train_split: str
  test_split: str
  image_size: int
  num_classes: int
  dataset_sha256: str = ''  # a file dataset's contents, hashed once by the launch


@dataclasses.dataclass(frozen=True)
class ChunkSettings:
  """How the training set becomes the protocol's experiments and batches."""
  num_chunks: int
  chunk_order: str  # 'random' (the paper's) or 'given'
  label_noise: float
  normalize: str  # 'auto', 'standard', 'unit' or 'none'
  batch_size: int
  last_batch: str  # batches.LAST_BATCH
  test_batch_size: int


@dataclasses.dataclass(frozen=True)
class OptimSettings:
  """The optimizer and the SoTA recipe's schedule and augmentation."""
  optimizer: str  # 'sgd' or 'sam'
  learning_rate: float
  momentum: float
  weight_decay: float
  rho: float  # SAM's radius
  sam_bn_second_pass: bool
  sota: bool
  sota_milestones: tuple  # epochs where the learning rate drops
  sota_gamma: float


@dataclasses.dataclass(frozen=True)
class StopRule:
  """When an experiment's training stops: converged, or out of epochs."""
  converge_acc: float
  max_epoch: int


@dataclasses.dataclass(frozen=True)
class Execution:
  """How the run computes and saves; never what it computes."""
  epoch_mode: str  # 'auto', 'loop' or 'scan'
  scan_block: int  # 0 = the backend's choice
  checkpoint_every_epochs: int
  keep_checkpoints: int
  checkpoint_min_interval_s: float


@dataclasses.dataclass(frozen=True)
class Outputs:
  """What the run shows and writes besides its results."""
  progress: bool
  tensorboard: bool
  wandb: bool
  diagnostics: bool


@dataclasses.dataclass(frozen=True)
class RunSettings:
  """Everything one run of the protocol computes with. A group's runs
  differ only in `seed`."""
  train_type: str
  seed: int
  hparams: Any  # the training type's own typed values (training_types)
  model: ModelSettings
  data: DataSettings
  chunks: ChunkSettings
  optim: OptimSettings
  stop: StopRule
  execution: Execution
  outputs: Outputs
  swept: tuple = ()  # ((field, value), ...) of the launch's swept fields, in name order


@dataclasses.dataclass(frozen=True, eq=False)
class Run:
  """One run: its name, folder and settings, and its config as results.json
  records it (`recorded`: plain values, written, never read by the core)."""
  name: str
  folder: str
  settings: RunSettings
  recorded: dict

  @property
  def seed(self) -> int:
    return self.settings.seed

  @property
  def stem(self) -> str:
    """The name without the seed: what the seeds of a table row share."""
    return self.name.rsplit('-seed', 1)[0]


PARTS = {'model': ModelSettings, 'data': DataSettings, 'chunks': ChunkSettings,
         'optim': OptimSettings, 'stop': StopRule, 'execution': Execution,
         'outputs': Outputs}


def part(cls, fields: dict):
  """A settings part from a run's plain field values (those it names)."""
  return cls(**{f.name: fields[f.name] for f in dataclasses.fields(cls) if f.name in fields})
