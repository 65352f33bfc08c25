"""synthetic_faces' domain metric: a network that reads each face's generating attributes.

synthetic_faces stores every parameter a face was drawn from (data/synthetic_faces.ATTRIBUTES).
A small CNN learns to read them back from the train split at 32x32 (trained once per dataset
version and channel count and cached, its time in docs/metrics.md); its accuracy on the
held-out test split travels with every number it produces. On it, two metrics:

- domain FD: the Fréchet distance between the real and the generated images' 256 penultimate
  features (FID's recipe with a network that knows what these faces are made of);
- attribute match: the attributes read from generated faces against those read from real ones:
  per continuous attribute the 1-D Wasserstein-1 distance in units of the attribute's standard
  deviation (attr_w1: the mean over the attributes the network reads with test R^2 >= 0.5;
  at 32x32 a smile or a nose is a few pixels), per categorical one (hair style, glasses, beard)
  the total variation distance between the class frequencies (mean: attr_tv). 0 is a perfect
  match; both sides are read by the same network, so its errors largely cancel.

Images at other resolutions are resized to 32x32 as the dataset itself is (PIL antialiased
bicubic), so runs at 32 and 64 pixels are compared on the same scale.
"""

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from facegan_jax.data import preprocess, sources, synthetic_faces
from facegan_jax.evaluation import distances, netcache, parallel
from facegan_jax.models.dcgan import DownConv
from facegan_jax.run.progress import Progress

RESOLUTION = 32
FEATURES = 256
CATEGORICAL = {'hair_style': len(synthetic_faces.HAIR_STYLES),
               'glasses': len(synthetic_faces.GLASSES), 'beard': 2}
# The light's angle is circular: read as its cosine and sine.
CONTINUOUS = tuple(n for n in synthetic_faces.ATTRIBUTES if n not in CATEGORICAL
                   and n != 'light_angle') + ('light_cos', 'light_sin')
# Changing the network or its training changes every number: bump VERSION.
VERSION = 1
TRAIN = dict(steps=4000, batch_size=128, learning_rate=2e-3, epochs_at_most=20, seed=0)
WIDTHS = (32, 64, 128)
MIN_R2 = 0.5


def conv_trunk(channels, rngs, widths=WIDTHS):
  """The 4x4 stride-2 convolutions of the feature networks (this one and the class net's),
  He-initialised: the DCGAN default of N(0, 0.02) trains slowly here."""
  widths = (channels, *widths)
  downs = nnx.List([DownConv(a, b, use_bias=True, rngs=rngs)
                    for a, b in zip(widths, widths[1:])])
  for down in downs:
    fan_in = np.prod(down.kernel.shape[:3])
    down.kernel[...] = down.kernel[...] * (np.sqrt(2 / fan_in) / 0.02)
  return downs


def trunk_outputs(downs, images):
  """uint8 images through `conv_trunk`'s convolutions (LeakyReLU 0.2), flattened."""
  x = images.astype(jnp.float32) / 127.5 - 1
  for down in downs:
    x = jax.nn.leaky_relu(down(x), 0.2)
  return x.reshape(x.shape[0], -1)


class AttributeNet(nnx.Module):
  """uint8 faces (B, 32, 32, C) -> (features (B, 256), continuous (B, K), class logits)."""

  def __init__(self, channels, *, rngs):
    self.downs = conv_trunk(channels, rngs)
    side = RESOLUTION // 2**len(self.downs)
    self.hidden = nnx.Linear(side * side * WIDTHS[-1], FEATURES, rngs=rngs)
    self.out = nnx.Linear(FEATURES, len(CONTINUOUS) + sum(CATEGORICAL.values()), rngs=rngs)

  def __call__(self, images):
    features = self.hidden(trunk_outputs(self.downs, images))
    out = self.out(jax.nn.leaky_relu(features, 0.2))
    splits = np.cumsum([len(CONTINUOUS), *CATEGORICAL.values()])[:-1]
    continuous, *logits = jnp.split(out, splits, axis=-1)
    return features, continuous, logits


def targets(attributes):
  """Stored attributes (N, len(ATTRIBUTES)) -> (continuous (N, K) float32, [class codes])."""
  column = {name: attributes[:, i] for i, name in enumerate(synthetic_faces.ATTRIBUTES)}
  column['light_cos'] = np.cos(column['light_angle'])
  column['light_sin'] = np.sin(column['light_angle'])
  continuous = np.stack([column[name] for name in CONTINUOUS], axis=1).astype(np.float32)
  return continuous, [column[name].astype(np.int32) for name in CATEGORICAL]


def to_input(images, channels):
  """Images of any resolution as the network's uint8 (N, 32, 32, channels)."""
  if images.shape[1] == RESOLUTION:
    return np.asarray(images)
  return preprocess.to_model_images(np.asarray(images), RESOLUTION, channels)


def _loss(model, images, continuous, *classes):
  _, predicted, logits = model(images)
  loss = jnp.mean(jnp.square(predicted - continuous))
  for logit, label in zip(logits, classes):
    loss += optax.softmax_cross_entropy_with_integer_labels(logit, label).mean()
  return loss


def train(config):
  """Trains the network on `config.dataset`'s train split; returns (model, quality record)."""
  shape_config = dataclasses.replace(config, resolution=RESOLUTION)
  images = jnp.asarray(sources.load_images(shape_config, 'train'))
  continuous, classes = targets(np.asarray(sources.load_attributes(config, 'train')))
  mean, std = continuous.mean(0), continuous.std(0) + 1e-6
  labels = (jnp.asarray((continuous - mean) / std), *map(jnp.asarray, classes))
  model = AttributeNet(config.channels, rngs=nnx.Rngs(TRAIN['seed']))
  batch = TRAIN['batch_size']
  steps = min(TRAIN['steps'], TRAIN['epochs_at_most'] * len(images) // batch)
  optimizer = nnx.Optimizer(model, optax.adam(optax.cosine_decay_schedule(
      TRAIN['learning_rate'], steps)), wrt=nnx.Param)

  @nnx.jit
  def step(model, optimizer, images, labels, index):
    grads = nnx.grad(_loss)(model, images[index], *(y[index] for y in labels))
    optimizer.update(model, grads)

  rng = np.random.default_rng(TRAIN['seed'])
  started = time.perf_counter()
  progress = Progress('Training the attribute net', steps, 'steps',
                      sync=lambda: jax.block_until_ready(nnx.state(model)))
  for i in range(steps):
    step(model, optimizer, images, labels, jnp.asarray(rng.integers(0, len(images), batch)))
    progress(i + 1)
  seconds = time.perf_counter() - started
  test = sources.load_images(shape_config, 'test')
  quality = _quality(model, test, mean, std, *targets(sources.load_attributes(config, 'test')))
  return model, dict(quality, mean=mean.tolist(), std=std.tolist(), train_steps=steps,
                     n_train=len(images), train_seconds=round(seconds, 1))


def _quality(model, images, mean, std, continuous, classes):
  """R^2 per continuous attribute and accuracy per categorical one on held-out faces."""
  _, predicted, predicted_classes = read(model, images)
  predicted = predicted * std + mean
  r2 = 1 - ((predicted - continuous)**2).mean(0) / continuous.var(0).clip(1e-12)
  accuracy = [float((p == c).mean()) for p, c in zip(predicted_classes, classes)]
  return dict(n_test=len(images), r2=dict(zip(CONTINUOUS, np.round(r2, 4).tolist())),
              mean_r2=float(r2.mean()), accuracy=dict(zip(CATEGORICAL, accuracy)))


def read(model, images):
  """(features, standardised continuous attributes, [class codes]) of 32x32 uint8 images,
  computed data-parallel over the local devices."""
  features, continuous, *logits = parallel.map_batches(
      lambda x: _forward(model, x), images, batch_per_device=256)
  return features, continuous, [logit.argmax(-1) for logit in logits]


@jax.jit
def _forward(model, x):
  features, continuous, logits = model(x)
  return (features, continuous, *logits)


def load_or_train(config):
  """The network for `config` and its quality record, trained once and cached."""
  key = dict(dataset=config.dataset, version=sources.version(config), channels=config.channels,
             resolution=RESOLUTION, net=VERSION, widths=WIDTHS, train=TRAIN)
  return netcache.load_or_train(
      'attribute_net', key, lambda: AttributeNet(config.channels, rngs=nnx.Rngs(0)),
      lambda: train(config))


def read_images(model, images, channels):
  """read() of uint8 images of any resolution."""
  return read(model, to_input(images, channels))


def metrics(model, quality, real_read, fake, channels):
  """Domain FD and attribute match of uint8 fakes (any resolution) against the reals, given
  as their read_images()."""
  import scipy.stats  # noqa: PLC0415  (slow to import, and every main.py run imports this module)
  real_features, real_cont, real_classes = real_read
  fake_features, fake_cont, fake_classes = read_images(model, fake, channels)
  fd = distances.frechet_distance(*distances.mean_and_covariance(real_features),
                                  *distances.mean_and_covariance(fake_features))
  w1 = {name: scipy.stats.wasserstein_distance(real_cont[:, i], fake_cont[:, i])
        for i, name in enumerate(CONTINUOUS)}
  # Attributes the network cannot read (a 2-pixel smile at 32x32) would only add noise.
  readable = [name for name in CONTINUOUS if quality['r2'][name] >= MIN_R2]
  tv = {}
  for name, size, r, f in zip(CATEGORICAL, CATEGORICAL.values(), real_classes, fake_classes):
    tv[name] = 0.5 * np.abs(np.bincount(r, minlength=size) / len(r)
                            - np.bincount(f, minlength=size) / len(f)).sum()
  network = dict(network=f'attribute net v{VERSION} ({FEATURES} features at {RESOLUTION}px)',
                 weights_sha256=quality['sha256'], test_mean_r2=round(quality['mean_r2'], 4),
                 test_accuracy=quality['accuracy'])
  return dict(
      domain_fd=dict(value=float(fd), **network),
      attr_w1=dict(value=float(np.mean([w1[name] for name in readable])),
                   per_attribute={k: round(float(v), 4) for k, v in w1.items()},
                   settings='1-D Wasserstein-1 in standard deviations, mean over the '
                            f'{len(readable)} of {len(w1)} continuous attributes read with '
                            f'test R^2 >= {MIN_R2}', **network),
      attr_tv=dict(value=float(np.mean(list(tv.values()))),
                   per_attribute={k: round(float(v), 4) for k, v in tv.items()},
                   settings='total variation of class frequencies, mean over '
                            f'{", ".join(CATEGORICAL)}', **network))
