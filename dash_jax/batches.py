"""How an epoch over n examples is cut into batches (config.last_batch), and
which experiments end their epochs in a small batch.

The original code's DataLoader(drop_last=False) ends an epoch over n examples
with a batch of n mod batch_size examples ('keep', the default). BatchNorm in
training mode normalises a batch by its own mean and variance; over a few
examples those are noise (over 2, each feature becomes exactly -1 and +1),
and the running accuracy that decides convergence is the mean of the batch
accuracies, so that batch weighs as much as a full one: one wrong example in
a batch of 2 costs half a batch. Experiments whose epochs end in such a batch
can take many times their usual epochs, never converge, or diverge
(docs/last_batch.md). The two other modes are deviations from the original
(docs/deviations.md):

- 'drop_small': a last batch smaller than small_batch(batch_size) is left
  out of each epoch (a different draw of examples each epoch, as the order
  is drawn anew); its steps are not counted.
- 'balanced': the epoch's examples are spread over ceil(n / batch_size)
  batches of nearly equal size (the first n mod k batches one example more),
  so the batch count, and with it the step count, is the original's.
"""
from __future__ import annotations

import math

LAST_BATCH_MODES = ('keep', 'drop_small', 'balanced')
# A last batch under this many examples is 'small' (docs/last_batch.md):
# BatchNorm's statistics over a few examples are noise (Wu & He, Group
# Normalization, ECCV 2018: its error rises steeply below 16 a batch), and
# the convergence test averages batch accuracies, so one miss in a batch of m
# costs 1/m of a batch: at n = 3,600 (29 batches) 99.9% allows 0.029, so one
# miss in any batch under 35 examples fails the epoch. Measured with batch
# 128: last batches of 2-16 examples diverged or reached max_epoch, 16-28
# took 1.5-21 times the steps of balanced batches, 32 1.5-3.3 times, 40-48
# 1.2-2 times, more about as many.
SMALL_BATCH = 32


def small_batch(batch_size: int) -> int:
  """Last batches below this many examples are 'small': SMALL_BATCH, or a
  quarter of a batch for batches under 128 (where every batch is small)."""
  return min(SMALL_BATCH, batch_size // 4)


def last_batch_size(n: int, batch_size: int) -> int:
  """Examples in the last batch of a 'keep' epoch over n examples."""
  return n - (math.ceil(n / batch_size) - 1) * batch_size


def is_small(n: int, batch_size: int) -> bool:
  """Whether a 'keep' epoch over n examples ends in a small batch after full
  ones (an epoch of one batch, n <= batch_size, has no other batch to match)."""
  return n > batch_size and last_batch_size(n, batch_size) < small_batch(batch_size)


def num_batches(n: int, batch_size: int, mode: str = 'keep', drop_single: bool = False) -> int:
  """Batches of an epoch over n examples. `drop_single`: a last batch of one
  example is left out (train.TrainOptions.drop_single), in every mode but
  'balanced', whose batches are all near n / k."""
  count = math.ceil(n / batch_size)
  if mode == 'balanced' or count == 1:
    return count
  if (mode == 'drop_small' and is_small(n, batch_size)) or (drop_single and n % batch_size == 1):
    return count - 1
  return count


def batch_sizes(n: int, batch_size: int, mode: str = 'keep', drop_single: bool = False) -> list:
  """The examples of each batch of an epoch, in order."""
  k = num_batches(n, batch_size, mode, drop_single)
  if mode == 'balanced':
    return [n // k + (b < n % k) for b in range(k)]
  return [min(batch_size, n - b * batch_size) for b in range(k)]


def small_last_batches(chunk_size: int, num_chunks: int, batch_size: int) -> list:
  """[(experiment, n, last batch)] of the experiments whose 'keep' epochs
  end in a small batch."""
  return [(j, j * chunk_size, last_batch_size(j * chunk_size, batch_size))
          for j in range(1, num_chunks + 1) if is_small(j * chunk_size, batch_size)]


def safe_batch_size(chunk_size: int, num_chunks: int, batch_size: int):
  """The largest batch size in [batch_size / 2, batch_size] whose epochs
  never end in a small batch, or None."""
  for b in range(batch_size, batch_size // 2, -1):
    if not small_last_batches(chunk_size, num_chunks, b):
      return b
  return None


def listing(chunk_size: int, num_chunks: int, batch_size: int) -> str:
  """'experiment 5: n=3,330, last batch 2 examples; ...' ('' if none)."""
  return '; '.join(f'experiment {j}: n={n:,}, last batch {last} example{"s" * (last != 1)}'
                   for j, n, last in small_last_batches(chunk_size, num_chunks, batch_size))


def fix(chunk_size: int, num_chunks: int, batch_size: int) -> str:
  """What avoids the small last batches: the field's modes, or a batch size."""
  safe = safe_batch_size(chunk_size, num_chunks, batch_size)
  return ('--config.last_batch=balanced (or drop_small)'
          + (f' or --config.batch_size={safe}' if safe else '') + ' avoids it')


def likely_cause(j: int, n: int, batch_size: int, chunk_size: int, num_chunks: int) -> str:
  """The clause a failing experiment's message adds when its 'keep' epochs
  end in a small batch ('' otherwise)."""
  if not is_small(n, batch_size):
    return ''
  last = last_batch_size(n, batch_size)
  return (f'likely cause: experiment {j}\'s epochs (n={n:,}) end in a batch of {last} '
          f'example{"s" * (last != 1)}, over which BatchNorm normalises noise; '
          + fix(chunk_size, num_chunks, batch_size))
