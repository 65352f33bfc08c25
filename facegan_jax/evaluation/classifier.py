"""Class metrics for labelled datasets: a small classifier trained on the real images.

Any dataset with labels (a folder with class subfolders, a TFDS dataset with a `label`
feature) gets a CNN trained once per dataset version and channel count on a fixed 90% of its
training images (32x32; cached like the attribute network); its accuracy on the other 10%
travels with every number it produces. On it:

- class_fd: the Fréchet distance between the real and generated images' 128 penultimate
  features (FID's recipe with a network that knows the classes);
- class_tv: the total variation distance between the predicted-class frequencies of the real
  and of the generated images (0: the same mix of classes; 1: disjoint);
- class_coverage: how many of the K classes receive at least 1/(2K) of the generated images
  (K for a generator that draws every class about as often as the data, 1 when it collapsed).

Each record also holds its real-vs-real floor: the same metric for as many other training
images in place of the generated ones, what a generator that drew real images would score.
"""

import dataclasses
import functools
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from facegan_jax.data import sources
from facegan_jax.evaluation import distances, netcache, parallel
from facegan_jax.run.progress import Progress
from facegan_jax.evaluation.face_attributes import (RESOLUTION, conv_trunk, to_input,
                                                    trunk_outputs)

FEATURES = 128
WIDTHS = (32, 64, 128)
# Changing the network or its training changes every number: bump VERSION.
VERSION = 1
TRAIN = dict(steps=3000, epochs_at_most=30, batch_size=128, learning_rate=2e-3,
             held_out=0.1, seed=0)


class ClassNet(nnx.Module):
  """uint8 images (B, 32, 32, C) -> (features (B, 128), class logits (B, K))."""

  def __init__(self, channels, num_classes, *, rngs):
    self.downs = conv_trunk(channels, rngs, WIDTHS)
    side = RESOLUTION // 2**len(self.downs)
    self.hidden = nnx.Linear(side * side * WIDTHS[-1], FEATURES, rngs=rngs)
    self.out = nnx.Linear(FEATURES, num_classes, rngs=rngs)

  def __call__(self, images):
    features = self.hidden(trunk_outputs(self.downs, images))
    return features, self.out(jax.nn.leaky_relu(features, 0.2))


def split(n):
  """(train indices, held-out indices) of n labelled images: a fixed random 10% held out."""
  order = np.random.default_rng(TRAIN['seed']).permutation(n)
  held = max(1, int(round(n * TRAIN['held_out'])))
  return np.sort(order[held:]), np.sort(order[:held])


@functools.lru_cache(maxsize=8)
def _adam(learning_rate, steps):
  """Adam on a cosine schedule over `steps`: one object per setting, so that every training
  of that length (CAS trains one at each evaluation) reuses the compiled step, whose cache
  key holds the optimizer."""
  return optax.adam(optax.cosine_decay_schedule(learning_rate, steps))


def _loss(model, images, labels):
  return optax.softmax_cross_entropy_with_integer_labels(model(images)[1], labels).mean()


@nnx.jit
def _step(model, optimizer, x, y, index):
  """One Adam step on the rows `index` of the images `x` and classes `y` (arguments, not
  constants baked into the program)."""
  optimizer.update(model, nnx.grad(_loss)(model, x[index], y[index]))


def train(images, labels, num_classes, channels, held_out=True,
          label='Training the class net'):
  """Trains a ClassNet on uint8 images of any resolution; returns (model, quality record),
  its accuracy on a fixed 10% held out (`held_out`), else trained on all (no accuracy)."""
  images = to_input(images, channels)
  train_rows, held_rows = split(len(images)) if held_out else (np.arange(len(images)), None)
  x, y = jnp.asarray(images[train_rows]), jnp.asarray(labels[train_rows])
  model = ClassNet(channels, num_classes, rngs=nnx.Rngs(TRAIN['seed']))
  batch = TRAIN['batch_size']
  steps = min(TRAIN['steps'], TRAIN['epochs_at_most'] * len(x) // batch)
  optimizer = nnx.Optimizer(model, _adam(TRAIN['learning_rate'], steps), wrt=nnx.Param)
  rng = np.random.default_rng(TRAIN['seed'])
  started = time.perf_counter()
  progress = Progress(label, steps, 'steps',
                      sync=lambda: jax.block_until_ready(nnx.state(model)))
  for i in range(steps):
    _step(model, optimizer, x, y, jnp.asarray(rng.integers(0, len(x), batch)))
    progress(i + 1)
  seconds = time.perf_counter() - started
  if held_rows is None:
    return model, dict(n_train=len(train_rows), train_steps=steps,
                       train_seconds=round(seconds, 1))
  _, predicted = read(model, images[held_rows])
  accuracy = float((predicted == labels[held_rows]).mean())
  majority = float(np.bincount(labels[held_rows]).max() / len(held_rows))
  return model, dict(held_out_accuracy=round(accuracy, 4), majority_baseline=round(majority, 4),
                     n_train=len(train_rows), n_held_out=len(held_rows), train_steps=steps,
                     train_seconds=round(seconds, 1))


def read(model, images):
  """(features, predicted classes) of 32x32 uint8 images, data-parallel over local devices."""
  features, logits = parallel.map_batches(lambda x: _forward(model, x), images,
                                          batch_per_device=256)
  return features, logits.argmax(-1)


@jax.jit
def _forward(model, x):
  return model(x)


def load_or_train(config, images, labels, class_names):
  """The classifier for `config`'s dataset (its training `images` and `labels`), trained once
  per dataset version and channel count and cached; returns (model, quality record)."""
  key = dict(dataset=config.dataset, version=sources.version(config), channels=config.channels,
             classes=list(class_names), n=len(labels), resolution=RESOLUTION, net=VERSION,
             widths=WIDTHS, features=FEATURES, train=TRAIN)
  num_classes = len(class_names)
  model, record = netcache.load_or_train(
      'class_net', key, lambda: ClassNet(config.channels, num_classes, rngs=nnx.Rngs(0)),
      lambda: train(images, np.asarray(labels), num_classes, config.channels))
  return model, dict(record, classes=list(class_names))


@dataclasses.dataclass(frozen=True)
class ClassMetrics:
  """The class metrics of uint8 images (any resolution) against a fixed set of reals."""
  model: nnx.Module
  quality: dict
  channels: int
  real_features: np.ndarray
  real_classes: np.ndarray
  floor: dict  # metric name -> its value for other reals in place of the fakes

  @classmethod
  def prepare(cls, model, quality, channels, real, others):
    """Reads the real subset `real`, and scores `others` (other training images) against it
    for the floor."""
    real_features, real_classes = read(model, to_input(real, channels))
    metrics = cls(model, quality, channels, real_features, real_classes, {})
    if len(others) < 2:  # every training image is in the subset: no floor
      return dataclasses.replace(metrics, floor=dict(
          class_fd=None, class_tv=None, class_coverage=None, n_floor=len(others)))
    return dataclasses.replace(metrics, floor=dict(metrics.values(others),
                                                   n_floor=len(others)))

  def values(self, images):
    """{class_fd, class_tv, class_coverage, fake_frequencies} of `images`."""
    features, classes = read(self.model, to_input(images, self.channels))
    k = len(self.quality['classes'])
    fd = distances.frechet_distance(*distances.mean_and_covariance(self.real_features),
                                    *distances.mean_and_covariance(features))
    real_freq = np.bincount(self.real_classes, minlength=k) / len(self.real_classes)
    fake_freq = np.bincount(classes, minlength=k) / len(classes)
    return dict(class_fd=float(fd), class_tv=float(0.5 * np.abs(real_freq - fake_freq).sum()),
                class_coverage=int((fake_freq >= 1 / (2 * k)).sum()),
                fake_frequencies=np.round(fake_freq, 4).tolist())

  def __call__(self, fake):
    """The three metric records of uint8 fakes, each with its floor and provenance."""
    values = self.values(fake)
    k = len(self.quality['classes'])
    network = dict(network=f'class net v{VERSION} ({FEATURES} features at {RESOLUTION}px, '
                           f'{k} classes)', weights_sha256=self.quality['sha256'],
                   held_out_accuracy=self.quality['held_out_accuracy'],
                   n_floor=self.floor['n_floor'])
    return dict(
        class_fd=dict(value=values['class_fd'], floor=self.floor['class_fd'], **network),
        class_tv=dict(value=values['class_tv'], floor=self.floor['class_tv'],
                      frequencies=dict(zip(self.quality['classes'], values['fake_frequencies'])),
                      settings='total variation of predicted-class frequencies', **network),
        class_coverage=dict(value=values['class_coverage'], floor=self.floor['class_coverage'],
                            of=k, settings=f'classes with >= 1/(2K) = {1 / (2 * k):.3f} of '
                                           'the generated images (higher is better)',
                            **network))
