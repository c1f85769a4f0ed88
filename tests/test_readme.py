"""The README's code blocks run as written."""
import pathlib

import jax
import numpy as np
import optax

from dash_jax import dash, models

README = pathlib.Path(__file__).resolve().parent.parent / 'README.md'


def linen_snippet() -> str:
  """The linen half of the code block under "DASH in your own training loop"."""
  section = README.read_text().split('## DASH in your own training loop', 1)[1]
  block = section.split('```python\n', 1)[1].split('```', 1)[0]
  return block.split('# NNX:', 1)[0]


def test_readme_linen_snippet_runs_on_a_model_with_batchnorm():
  """On the project's MLP (BatchNorm, running statistics in batch_stats) the
  snippet's loss sees the statistics: the direction and the shrunk weights
  are those of the model in evaluation mode."""
  model = models.MLP(num_classes=10, width=16)
  rng = np.random.default_rng(0)
  x = rng.normal(size=(24, 8, 8, 1)).astype(np.float32)
  y = rng.integers(0, 10, 24).astype(np.int32)
  variables = model.init(jax.random.PRNGKey(0), x[:8])
  _, stats = model.apply(variables, x, train=True, mutable=['batch_stats'])  # as if trained
  variables = {**variables, **stats}
  params = variables['params']
  batches = [(x[i:i + 8], y[i:i + 8]) for i in range(0, 24, 8)]
  namespace = {'optax': optax, 'model': model, 'variables': variables, 'params': params,
               'batches': batches}
  exec(compile(linen_snippet(), str(README), 'exec'), namespace)

  def loss(p, batch):
    logits = model.apply({'params': p, 'batch_stats': variables['batch_stats']}, batch[0])
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch[1]).mean()
  expected = dash.direction(loss, params, batches, alpha=0.3)
  for got, want in zip(jax.tree.leaves(namespace['direction']), jax.tree.leaves(expected)):
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
  shrunk = namespace['params']
  for got, want in zip(jax.tree.leaves(shrunk), jax.tree.leaves(dash.shrink(params, expected,
                                                                               lam=0.3))):
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
  assert jax.tree.structure(shrunk) == jax.tree.structure(params)
  kernel = shrunk['fc1']['kernel']
  assert np.all(np.isfinite(kernel)) and np.abs(kernel).sum() < np.abs(params['fc1']['kernel']).sum()
