"""DASH in a hand-written linen + optax loop: digits arriving in rounds.

Each round adds a chunk of sklearn's bundled 8x8 digits (some training labels
re-drawn at random: memorisable noise) and trains to (near) convergence on
all data so far, warm-started from the previous round. 'warm' keeps the
weights as they are; 'dash' shrinks them with DASH before each new round.

  python -m examples.linen_digits            # from the repository root
  python -m examples.linen_digits --rounds 3 --max-epochs 20
"""
from __future__ import annotations

import argparse

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from sklearn.datasets import load_digits

from dash_jax import dash


class MLP(nn.Module):
  width: int = 256

  @nn.compact
  def __call__(self, x):
    return nn.Dense(10)(nn.relu(nn.Dense(self.width)(x)))


def rounds_of_digits(num_rounds, noise, seed):
  """Standardised digits: the training set in `num_rounds` chunks (labels of
  a `noise` fraction re-drawn uniformly) and a clean test set."""
  x, y = load_digits(return_X_y=True)
  rng = np.random.default_rng(seed)
  order = rng.permutation(len(y))
  x, y = x[order].astype(np.float32), y[order].astype(np.int32)
  n_test = len(y) // 5
  x_test, y_test, x, y = x[:n_test], y[:n_test], x[n_test:], y[n_test:].copy()
  noisy = rng.random(len(y)) < noise
  y[noisy] = rng.integers(0, 10, noisy.sum())
  mean, std = x.mean(0), x.std(0) + 1e-6
  x, x_test = (x - mean) / std, (x_test - mean) / std
  return np.array_split(x, num_rounds), np.array_split(y, num_rounds), (x_test, y_test)


model = MLP()
tx = optax.sgd(0.01, momentum=0.9)


def loss_fn(params, batch):
  """Mean cross-entropy: what training minimises, and what DASH's direction
  is the (negative, averaged) gradient of."""
  x, y = batch
  return optax.softmax_cross_entropy_with_integer_labels(model.apply({'params': params}, x), y).mean()


@jax.jit
def train_step(params, opt_state, batch):
  loss, grads = jax.value_and_grad(loss_fn)(params, batch)
  updates, opt_state = tx.update(grads, opt_state, params)
  return optax.apply_updates(params, updates), opt_state, loss


@jax.jit
def accuracy(params, x, y):
  return jnp.mean(jnp.argmax(model.apply({'params': params}, x), -1) == y)


def train_until_converged(params, opt_state, x, y, rng, args):
  """Epochs of shuffled mini-batches until train accuracy >= args.converge."""
  for epoch in range(1, args.max_epochs + 1):
    order = rng.permutation(len(y))
    for start in range(0, len(y), args.batch_size):
      idx = order[start:start + args.batch_size]
      params, opt_state, _ = train_step(params, opt_state, (x[idx], y[idx]))
    if accuracy(params, x, y) >= args.converge:
      break
  return params, opt_state, epoch


def run(method, chunks_x, chunks_y, test, args):
  """Test accuracy and epochs of each round for 'warm' or 'dash'."""
  params = model.init(jax.random.PRNGKey(args.seed), chunks_x[0][:1])['params']
  opt_state = tx.init(params)
  rng = np.random.default_rng(args.seed)
  rows = []
  for r in range(len(chunks_x)):
    if method == 'dash' and r > 0:
      # Negative gradient on all data seen so far, oldest chunk first (one
      # batch per chunk, as the paper's code), then shrink; optimizer kept.
      seen = list(zip(chunks_x[:r + 1], chunks_y[:r + 1]))
      direction = dash.direction(loss_fn, params, seen, alpha=args.alpha)
      params = dash.shrink(params, direction, lam=args.lam)
    x, y = np.concatenate(chunks_x[:r + 1]), np.concatenate(chunks_y[:r + 1])
    params, opt_state, epochs = train_until_converged(params, opt_state, x, y, rng, args)
    rows.append((float(accuracy(params, *test)), epochs))
  return rows


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--rounds', type=int, default=5)
  parser.add_argument('--noise', type=float, default=0.2, help='training label noise')
  parser.add_argument('--max-epochs', type=int, default=200)
  parser.add_argument('--converge', type=float, default=0.99, help='train accuracy to stop at')
  parser.add_argument('--batch-size', type=int, default=64)
  parser.add_argument('--lam', type=float, default=0.3, help='DASH lambda')
  parser.add_argument('--alpha', type=float, default=0.3, help='DASH EMA alpha')
  parser.add_argument('--seed', type=int, default=0)
  args = parser.parse_args(argv)
  chunks_x, chunks_y, test = rounds_of_digits(args.rounds, args.noise, args.seed)
  results = {m: run(m, chunks_x, chunks_y, test, args) for m in ('warm', 'dash')}
  for r in range(args.rounds):
    (wa, we), (da, de) = results['warm'][r], results['dash'][r]
    print(f'round {r + 1}/{args.rounds}  warm: test acc {100 * wa:.1f}% ({we} epochs)  '
          f'dash: test acc {100 * da:.1f}% ({de} epochs)')


if __name__ == '__main__':
  main()
