"""D as an objective sees it: a function of images that threads its BatchNorm statistics."""

import functools
from typing import Any

import flax
import jax
import jax.numpy as jnp
from flax import nnx

from facegan_jax.augment import ada, diffaug
from facegan_jax.mesh import DATA_AXIS
from facegan_jax.models import spectral_norm
from facegan_jax.models.conditioning import of_classes


@flax.struct.dataclass
class Critic:
  """D in train mode with the parameters it is differentiated in.

  `d(images, role)` returns (logits, d after the call): the images pass through --augment
  (with the role's per-example keys) unless `augment=False`, then D, with the role's dropout
  keys; the returned critic holds the BatchNorm statistics of that call, so each batch gets
  its own statistics, as PyTorch's loop makes them. Roles are 'real' and 'fake'. It is a
  pytree, so an objective can return it from `jax.vjp(..., has_aux=True)` or `lax.cond`.
  """
  params: Any
  sn: Any  # spectral norm's vectors ({} when off): each call normalises `params` with them
  stats: Any
  dropout_keys: Any  # {role: one key per example}
  augment_keys: Any
  ada_p: jax.Array
  graph: Any = flax.struct.field(pytree_node=False)
  config: Any = flax.struct.field(pytree_node=False)
  # Whether lazy penalties fall on this D update, where the compilation knows it (None: the
  # step decides; penalised_pass).
  penalty_due: bool | None = flax.struct.field(pytree_node=False, default=None)
  labels: Any = None  # the classes of both roles' images under --condition (B,), else None

  def __call__(self, images, role, augment=True):
    logits, stats = _forward(self.graph, self.config, augment, self.params, self.sn,
                             self.stats, images, self.augment_keys[role], self.ada_p,
                             self.dropout_keys[role], self.labels)
    return logits, self.replace(stats=stats)


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _forward(graph, config, augment, params, sn, stats, images, augment_keys, ada_p,
             dropout_keys, labels):
  """(D's logits, its new BatchNorm statistics). Jitted: a step calls D several times on
  the same shapes (reals and fakes, D's update and G's, R1 differentiating it twice), and a
  jitted function is traced once for all of them; XLA inlines the calls."""
  d = nnx.merge(graph, spectral_norm.normalize(params, sn), stats, copy=True)
  if augment:
    images = augmented(config, images, augment_keys, ada_p)
  logits = d(images, train=True, dropout_keys=dropout_keys, **of_classes(labels))
  return logits, nnx.state(d, nnx.BatchStat)


def augmented(config, images, keys, ada_p):
  """What D sees of `images` under --augment (one key per example)."""
  if config.augment == 'diffaug':
    return diffaug.diffaug(images, keys, config.diffaug_policy)
  if config.augment == 'ada':
    return ada.ada(images, keys, ada_p, config.ada_pipeline)
  return images


def input_gradients(d, images, role, augment=True):
  """(logits, d after the call, ∇ₓ Σ D(x) at `images`): the gradient in the images before any
  augmentation, differentiable in D's parameters (the layers' own backward passes are
  differentiated again)."""
  logits, x_vjp, d = jax.vjp(lambda x: d(x, role, augment), images, has_aux=True)
  (x_grads,) = x_vjp(jnp.ones_like(logits))
  return logits, d, x_grads


def mean_squared_norm(x_grads):
  """E‖g‖² over the global batch (inside shard_map), from this device's per-example `x_grads`."""
  per_example = jnp.square(x_grads.astype(jnp.float32)).reshape(x_grads.shape[0], -1).sum(-1)
  return jax.lax.pmean(per_example.mean(), DATA_AXIS)


def penalised_pass(d, images, role, d_step, gamma, every=1):
  """D on `images` with the zero-centred gradient penalty γ/2 · E‖∇ₓD(x)‖² (R1 on reals,
  Mescheder et al. 2018; R2 on fakes, R3GAN), the gradient of the summed logits in the images
  before any augmentation. Lazily, as StyleGAN2's R1: every `every` D steps (`lazily_due`),
  scaled by that interval, and 0 between: as `d.penalty_due` says where the compilation knows
  it (step.TrainFn: XLA on CPU differentiates convolutions inside a lax.cond in slow forms),
  else by a lax.cond on `d_step`.

  Returns (logits, d after the call, the penalty added to D's loss).
  """
  def with_penalty(images):
    logits, d_after, x_grads = input_gradients(d, images, role)
    return logits, d_after, 0.5 * gamma * every * mean_squared_norm(x_grads)

  def without(images):
    logits, d_after = d(images, role)
    return logits, d_after, jnp.zeros((), jnp.float32)

  if every == 1:
    return with_penalty(images)
  if d.penalty_due is not None:
    return with_penalty(images) if d.penalty_due else without(images)
  return jax.lax.cond(lazily_due(d_step, every), with_penalty, without, images)


def lazily_due(d_step, every):
  """Whether D update `d_step` (from 0) takes the lazy penalties: the last of each `every`
  updates, so that a run's k-th, 2k-th, ... steps (with one D update a step) take them and
  the metrics logged at those steps show them."""
  return (d_step + 1) % every == 0
