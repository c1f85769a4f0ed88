"""The PyTorch eager side of the benchmark: the original code's models, step,
SAM step, DASH direction pass and incremental protocol, written the way the
original does them (torch.optim.SGD, DataLoader-style shuffled batches), so
bench.py can time this project against them on the same machine."""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as tnn
import torch.nn.functional as F


class MLP(tnn.Module):
  """Flatten -> Linear -> BatchNorm1d -> ReLU -> Linear (default inits)."""

  def __init__(self, inputs, width, classes):
    super().__init__()
    self.fc1, self.bn1 = tnn.Linear(inputs, width), tnn.BatchNorm1d(width)
    self.head = tnn.Linear(width, classes)

  def forward(self, x):
    return self.head(F.relu(self.bn1(self.fc1(x.flatten(1)))))


class BasicBlock(tnn.Module):
  def __init__(self, cin, cout, stride):
    super().__init__()
    self.conv1 = tnn.Conv2d(cin, cout, 3, stride, 1, bias=False)
    self.bn1 = tnn.BatchNorm2d(cout)
    self.conv2 = tnn.Conv2d(cout, cout, 3, 1, 1, bias=False)
    self.bn2 = tnn.BatchNorm2d(cout)
    self.down = None
    if stride != 1 or cin != cout:
      self.down = tnn.Sequential(tnn.Conv2d(cin, cout, 1, stride, bias=False),
                                 tnn.BatchNorm2d(cout))

  def forward(self, x):
    y = F.relu(self.bn1(self.conv1(x)))
    y = self.bn2(self.conv2(y))
    return F.relu(y + (x if self.down is None else self.down(x)))


class ResNet18(tnn.Module):
  """torchvision ResNet-18 with a 3x3 stride-1 stem and 3x3/2 max-pool (the
  paper's standard model), Kaiming fan-out conv init."""

  def __init__(self, classes=10):
    super().__init__()
    self.conv1 = tnn.Conv2d(3, 64, 3, 1, 1, bias=False)
    self.bn1 = tnn.BatchNorm2d(64)
    self.pool = tnn.MaxPool2d(3, 2, 1)
    blocks, cin = [], 64
    for stage, cout in enumerate((64, 128, 256, 512)):
      for b in range(2):
        blocks.append(BasicBlock(cin, cout, 2 if stage > 0 and b == 0 else 1))
        cin = cout
    self.layers = tnn.Sequential(*blocks)
    self.fc = tnn.Linear(512, classes)
    for m in self.modules():
      if isinstance(m, tnn.Conv2d):
        tnn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')

  def forward(self, x):
    x = self.pool(F.relu(self.bn1(self.conv1(x))))
    x = self.layers(x)
    return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))
