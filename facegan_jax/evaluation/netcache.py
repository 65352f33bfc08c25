"""Small feature networks trained once on the real images and cached under XDG_CACHE_HOME."""

import hashlib
import json
import os

import jax
import numpy as np
from absl import logging
from flax import nnx

from facegan_jax.checkpoint.manager import leaf_names
from facegan_jax.run import files


def load_or_train(kind, key, build, train):
  """The network for `key`, trained once by `train()` and cached.

  Args:
    kind: the cache's subfolder, e.g. 'attribute_net'.
    key: a JSON-able dict of everything the weights depend on (dataset version, settings).
    build: () -> an untrained module of the network's shape.
    train: () -> (trained module, JSON-able quality record).
  Returns:
    (module, quality record with `cached` and the weight file's `sha256`).
  """
  name = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
  cache_dir = files.cache_dir(kind)
  path = os.path.join(cache_dir, f'{name}.npz')
  graph, params = nnx.split(nnx.eval_shape(build))
  if os.path.exists(path):
    with np.load(path, allow_pickle=False) as f:
      leaves = [f[n] for n in leaf_names(params)]
      record = json.loads(str(f['record']))
    params = jax.tree.unflatten(jax.tree.structure(params), leaves)
    return nnx.merge(graph, params), dict(record, cached=True, sha256=files.sha256(path))
  logging.info('Training the %s (once; cached in %s)', kind.replace('_', ' '), cache_dir)
  model, record = train()
  record = dict(record, key=key)
  os.makedirs(cache_dir, exist_ok=True)
  with files.atomic_path(path) as tmp:
    np.savez(tmp, record=json.dumps(record),
             **{n: np.asarray(x) for n, x in leaf_names(nnx.state(model)).items()})
  return model, dict(record, cached=False, sha256=files.sha256(path))
