"""The train state: everything a resume needs, with the model graphs and optimizers it runs.

Also the generator's sampling helpers, which need the state and nothing of the loop.
"""

import dataclasses
import functools
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from facegan_jax import models, ops, schedules
from facegan_jax.data.pipeline import to_uint8
from facegan_jax.models import spectral_norm
from facegan_jax.models.conditioning import of_classes


@flax.struct.dataclass
class TrainState:
  """Everything a resume needs. The data position is `step` itself (see data/pipeline.py).

  The static fields (the model graphs and Adam's settings) follow from the config and are
  equal for equal configs; they are not arrays, so checkpoints hold only the rest.
  """
  step: jax.Array
  g_params: Any
  g_stats: Any  # BatchNorm running statistics; the EMA generator shares them (as StyleGAN2)
  d_params: Any
  d_stats: Any
  g_opt: Any
  d_opt: Any
  ema_params: Any
  rng: jax.Array  # raw uint32 key: data order and per-step randomness derive from it
  # --spectral_norm's power-iteration vectors ({kernel name: u}; empty when off) and
  # --augment=ada's probability p (0 otherwise): state, not parameters.
  g_sn: Any
  d_sn: Any
  ada_p: jax.Array
  g_graph: Any = flax.struct.field(pytree_node=False, default=None)
  d_graph: Any = flax.struct.field(pytree_node=False, default=None)
  # Adam's settings of each network (see `Adam`).
  adam_g: Any = flax.struct.field(pytree_node=False, default=None)
  adam_d: Any = flax.struct.field(pytree_node=False, default=None)

  @property
  def tx_g(self):
    return self.adam_g.transformation()

  @property
  def tx_d(self):
    return self.adam_d.transformation()


@dataclasses.dataclass(frozen=True)
class Adam:
  """One network's Adam: its learning rate and β2 as schedules (schedules.py), its β1.

  Static data of the state, equal for equal configs. With a constant β2 it is optax.adam
  itself; a scheduled β2 goes in through optax.inject_hyperparams, whose optimizer state
  holds the hyperparameters beside Adam's.
  """
  lr: schedules.Schedule
  beta1: float
  beta2: schedules.Schedule

  @classmethod
  def of(cls, config, network):
    """`network`'s ('g' or 'd') Adam under `config`: D's betas are --beta1_d and --beta2_d
    where given, else both networks' --beta1 and --beta2."""
    beta1 = config.beta1_d if network == 'd' and config.beta1_d is not None else config.beta1
    return cls(schedules.lr(config, network), beta1, schedules.beta2(config, network))

  def transformation(self):
    lr = self.lr.start if self.lr.constant else self.lr
    if self.beta2.constant:
      return optax.adam(lr, self.beta1, self.beta2.start)
    return optax.inject_hyperparams(optax.adam)(learning_rate=lr, b1=self.beta1, b2=self.beta2)


def init_state(config):
  """A fresh state; pure, so `jax.eval_shape` of it gives the layout for restoring. Every
  later trace of G and D runs in --conv_impl's forms (ops.set_forms)."""
  ops.set_forms(config.conv_impl)
  g, d = models.build(config, nnx.Rngs(config.seed))
  g_graph, g_params, g_stats = nnx.split(g, nnx.Param, nnx.BatchStat)
  d_graph, d_params, d_stats = nnx.split(d, nnx.Param, nnx.BatchStat)
  g_key, d_key = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(config.seed + 1), 1))
  state = TrainState(
      step=jnp.zeros((), jnp.int32), g_params=g_params, g_stats=g_stats, d_params=d_params,
      d_stats=d_stats, g_opt=None, d_opt=None, ema_params=g_params,
      rng=jax.random.PRNGKey(config.seed + 1),
      g_sn=spectral_norm.init_vectors(g_params, g_key) if config.spectral_norm == 'gd' else {},
      d_sn=spectral_norm.init_vectors(d_params, d_key) if config.spectral_norm != 'none' else {},
      ada_p=jnp.zeros((), jnp.float32), g_graph=g_graph, d_graph=d_graph,
      adam_g=Adam.of(config, 'g'), adam_d=Adam.of(config, 'd'))
  return state.replace(g_opt=state.tx_g.init(g_params), d_opt=state.tx_d.init(d_params))


# XLA's options for a program that runs once per run: on CPU, LLVM's optimisations of the
# initialisation's code took 5.6-6.1 s of a fresh run's start (the quickstart's DCGAN) for a
# program that runs in milliseconds; without them it compiles in 1.4 s (docs/speed.md).
_ONCE_ON_CPU = {'xla_backend_optimization_level': 0}


def fresh_state(config, sharding):
  """init_state compiled as one program, its arrays laid out with `sharding`."""
  once = _ONCE_ON_CPU if jax.default_backend() == 'cpu' else None
  return jax.jit(lambda: init_state(config), out_shardings=sharding, compiler_options=once)()


def abstract_state(config, sharding):
  """The state's layout (shapes, dtypes, `sharding`) without computing it: what a checkpoint
  is restored into."""
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding),
                      jax.eval_shape(functools.partial(init_state, config)))


def data_key(state):
  """The key of the data order (epoch permutations)."""
  return jax.random.split(state.rng)[0]


def sample_params(config, state):
  """The generator parameters samples come from: the EMA ones when training keeps them,
  spectrally normalised (with G's stored vectors) under --spectral_norm=gd."""
  params = state.ema_params if schedules.uses_ema(config) else state.g_params
  return spectral_norm.normalize(params, state.g_sn)


def make_sample_fn(state):
  """Compiled G of `state`'s graph in inference mode: (params, stats, z, labels) -> images in
  [-1, 1], `labels` the classes (B,) under --condition, else None."""
  g_graph = state.g_graph

  def sample(params, stats, z, labels):
    return nnx.merge(g_graph, params, stats)(z, train=False, **of_classes(labels))
  return jax.jit(sample)


def generate_images(sample_fn, params, stats, z, labels=None, batch_size=256):
  """uint8 images of G (`make_sample_fn`) for latents z (of the classes `labels` under
  --condition), in batches."""
  return np.concatenate([to_uint8(sample_fn(
      params, stats, z[i:i + batch_size], None if labels is None else labels[i:i + batch_size]))
      for i in range(0, len(z), batch_size)])


GRID_COLUMNS = 8  # a class-conditional grid's columns: a row of each class


def class_rows(count, num_classes, columns=GRID_COLUMNS):
  """The classes of `count` images laid out a row of `columns` per class, in turn: image i
  of class (i // columns) mod K."""
  return (np.arange(count, dtype=np.int32) // columns) % num_classes


def class_grid(config):
  """(latents, classes) of the training grids under --condition: a row per class (at most
  64), the same GRID_COLUMNS latents (of --sample_seed) in every row, so the rows differ by
  class alone; (64 latents, None) without."""
  if not config.num_classes:
    return jax.random.normal(jax.random.PRNGKey(config.sample_seed), (64, config.z_dim)), None
  rows = min(config.num_classes, 64)
  z = jax.random.normal(jax.random.PRNGKey(config.sample_seed), (GRID_COLUMNS, config.z_dim))
  return jnp.tile(z, (rows, 1)), class_rows(rows * GRID_COLUMNS, config.num_classes)


def generator(config, state):
  """(z, labels=None) -> uint8 images from `state`'s sampling generator (see
  `sample_params`)."""
  return functools.partial(generate_images, make_sample_fn(state), sample_params(config, state),
                           state.g_stats)
