"""The PyTorch eager side of the benchmark: the original code's models, step,
SAM step, DASH direction pass and incremental protocol, written the way the
original does them (torch.optim.SGD, DataLoader-style shuffled batches), so
bench.py can time this project against them on the same machine."""
from __future__ import annotations

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


def sgd(model, lr=0.01, momentum=0.9):
  return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)


def train_step(model, opt, x, y):
  """One SGD step; returns the batch accuracy (a host sync, as the original's
  running-accuracy bookkeeping does every batch)."""
  opt.zero_grad(set_to_none=True)
  logits = model(x)
  F.cross_entropy(logits, y).backward()
  opt.step()
  return (logits.argmax(1) == y).float().mean().item()


def sam_step(model, opt, x, y, rho=0.1):
  """SAM as the original (davda54/sam): ascend to w + rho*g/(||g||+1e-12),
  second forward/backward there (BatchNorm in training mode both times),
  come back and take the base SGD step with the second gradient."""
  opt.zero_grad(set_to_none=True)
  logits = model(x)
  F.cross_entropy(logits, y).backward()
  params = [p for p in model.parameters() if p.grad is not None]
  with torch.no_grad():
    norm = torch.norm(torch.stack([p.grad.norm(2) for p in params]), 2)
    scale = rho / (norm + 1e-12)
    eps = [p.grad * scale for p in params]
    for p, e in zip(params, eps):
      p.add_(e)
  opt.zero_grad(set_to_none=True)
  F.cross_entropy(model(x), y).backward()
  with torch.no_grad():
    for p, e in zip(params, eps):
      p.sub_(e)
  opt.step()
  return (logits.argmax(1) == y).float().mean().item()


def direction(model, x, y, chunk_size, alpha):
  """EMA of negative gradients over the data in chunk-size batches, oldest
  first, model in eval mode (BatchNorm running statistics), as the original."""
  model.eval()
  params = list(model.parameters())
  g = [torch.zeros_like(p) for p in params]
  for start in range(0, (len(y) // chunk_size) * chunk_size, chunk_size):
    loss = F.cross_entropy(model(x[start:start + chunk_size]), y[start:start + chunk_size])
    grads = torch.autograd.grad(loss, params)
    g = [(1 - alpha) * gi - alpha * d for gi, d in zip(g, grads)]
  model.train()
  return g


def _cos(a, b, dims):
  """F.cosine_similarity's rule (PyTorch >= 1.12) over several dims: each
  vector divided by max(its norm, 1e-8), then the dot product."""
  a = a / a.norm(dim=dims, keepdim=True).clamp_min(1e-8)
  b = b / b.norm(dim=dims, keepdim=True).clamp_min(1e-8)
  return (a * b).sum(dims, keepdim=True)


@torch.no_grad()
def dash_shrink(model, g, lam):
  """Per-kernel DASH (the original code): Linear rows, conv (out, in) kernels,
  whole bias vectors scaled by clip(cos, lam, 1); norm layers untouched."""
  grads = dict(zip([n for n, _ in model.named_parameters()], g))
  for mod_name, mod in model.named_modules():
    if not isinstance(mod, (tnn.Linear, tnn.Conv2d)):
      continue
    for pname, p in mod.named_parameters(recurse=False):
      d = grads[f'{mod_name}.{pname}' if mod_name else pname]
      dims = tuple(range(p.ndim)) if pname == 'bias' else (
          (1,) if p.ndim == 2 else (2, 3))
      p.mul_(_cos(p, d, dims).clamp(lam, 1.0))


@torch.no_grad()
def evaluate(model, x, y, batch_size=256):
  model.eval()
  correct = sum((model(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum().item()
                for i in range(0, len(y), batch_size))
  model.train()
  return correct / len(y)


class PerSampleImages(torch.utils.data.Dataset):
  """The original code's data path: a dataset of uint8 images whose
  __getitem__ applies ToTensor + Normalize to one image at a time (what
  torchvision's transforms do), batched by a DataLoader (num_workers=0)."""

  def __init__(self, images, labels, mean, std):
    self.images, self.labels = images, labels
    self.mean = torch.as_tensor(np.asarray(mean, np.float32) / 255).view(-1, 1, 1)
    self.std = torch.as_tensor(np.asarray(std, np.float32) / 255).view(-1, 1, 1)

  def __len__(self):
    return len(self.labels)

  def __getitem__(self, i):
    x = torch.from_numpy(self.images[i]).permute(2, 0, 1).float().div(255)
    return (x - self.mean) / self.std, int(self.labels[i])


def _tensor_batches(x, y, batch_size, generator):
  """DataLoader(shuffle=True)'s order, by indexing whole tensors (faster)."""
  perm = torch.randperm(len(y), generator=generator)
  for start in range(0, len(y), batch_size):
    idx = perm[start:start + batch_size]
    yield x[idx], y[idx]


def train_until_converged(model, opt, x, y, batch_size, max_epoch, converge_acc,
                          generator):
  """Shuffled batches until the epoch's running accuracy (mean of batch
  accuracies) reaches converge_acc; returns steps taken. `x` is a tensor
  (batches by indexing) or a Dataset (batches from a DataLoader)."""
  if isinstance(x, torch.utils.data.Dataset):
    loader = torch.utils.data.DataLoader(x, batch_size=batch_size, shuffle=True,
                                         generator=generator)
    epoch = lambda: iter(loader)
  else:
    epoch = lambda: _tensor_batches(x, y, batch_size, generator)
  steps = 0
  for _ in range(max_epoch):
    accs = [train_step(model, opt, bx, by) for bx, by in epoch()]
    steps += len(accs)
    if sum(accs) / len(accs) >= converge_acc:
      break
  return steps


def dash_protocol(model, train_x, train_y, test_x, test_y, num_chunks, *,
                  batch_size, max_epoch, converge_acc, lr, momentum, lam, alpha,
                  seed, dataset=None):
  """The incremental protocol with DASH before experiments 2..J; the data is
  in buffer order (chunk 1 first). Returns per-experiment (steps, test acc).
  With `dataset` (a PerSampleImages in the same order) training batches come
  from a DataLoader over its first j chunks, as in the original code."""
  generator = torch.Generator().manual_seed(seed)
  opt = sgd(model, lr, momentum)
  chunk = len(train_y) // num_chunks
  out = []
  for j in range(1, num_chunks + 1):
    x, y = train_x[:j * chunk], train_y[:j * chunk]
    if j >= 2:
      dash_shrink(model, direction(model, x, y, chunk, alpha), lam)
    source = x if dataset is None else torch.utils.data.Subset(dataset, range(j * chunk))
    steps = train_until_converged(model, opt, source, y, batch_size, max_epoch,
                                  converge_acc, generator)
    out.append((steps, evaluate(model, test_x, test_y)))
  return out
