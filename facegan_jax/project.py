"""--mode=project: the latents whose images are given real images, and how near they come.

For each target image, --project_starts random latents are drawn and the one whose image is
nearest (by the loss below) starts; then --project_steps of Adam on the latent (learning rate
--project_lr, decayed to 0 on a cosine) minimise

    mean squared pixel difference, in [-1, 1]
    + --project_perceptual * mean squared difference of a feature network's features, over
      the targets' mean squared feature norm: Inception's pool features where
      --inception_weights is given (the FID network, at 299x299: a GPU's work), else the
      networks the metrics use, trained here without downloads (synthetic_faces' attribute
      network, a labelled dataset's class network)
    + PRIOR_WEIGHT * (|z|^2 / z_dim - 1)^2, which keeps z near the sphere where Gaussian
      latents of z_dim lie: the latents G was trained on.

Our families take one latent z (no per-layer latents, no noise inputs), so z is what is
optimised. A class-conditional G (--condition) draws each target in a class: its label where
the targets have labels (--project_split of a labelled dataset), else --sample_class, else the
class whose projection ends nearest (each target projected in every class at once, K times
the work); latents.npz and project.json hold the classes. StyleGAN2's projector starts from the mean latent, which in w is a typical face;
in z the mean of random starts is the origin, near no latent G was trained on, so the
nearest of the starts is taken instead.

Writes WORKDIR/project/: pairs.png (each target beside its reconstruction), timelapse.gif
(the reconstructions over the optimisation), latents.npz (z, targets, reconstructions) and
project.json (per-image distances, with two baselines that need no generator: each target's
nearest training image and the training images' mean, both in pixels; and how the dataset's
network reads the reconstructions against the targets).
"""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from flax import nnx
from PIL import Image

from facegan_jax import state as state_lib
from facegan_jax.data import folder, images, pipeline, sources
from facegan_jax.errors import UsageError
from facegan_jax.evaluation import classifier, evaluate, face_attributes, fid, inception
from facegan_jax.logs import visualize
from facegan_jax.models.conditioning import of_classes
from facegan_jax.run import files
from facegan_jax.sample import load_latest

PRIOR_WEIGHT = 0.1
TIMELAPSE_FRAMES = 16
TIMELAPSE_IMAGES = 8


@images.listed_once()
def project(config, workdir):
  """Writes WORKDIR/project/ (see the module docstring); returns project.json's record."""
  state, _ = load_latest(config, workdir)
  targets, where = load_targets(config)
  network = dataset_network(config)
  features = feature_network(config, network)
  g = nnx.merge(state.g_graph, state_lib.sample_params(config, state), state.g_stats)
  classes, classes_from = target_classes(config, len(targets))
  result = optimise(config, g, targets, features[1:] if features else None, classes)

  out = os.path.join(workdir, 'project')
  os.makedirs(out, exist_ok=True)
  reconstructions = pipeline.to_uint8(result['images'])
  pairs = np.stack([targets, reconstructions], axis=1).reshape((-1,) + targets.shape[1:])
  visualize.save_grid(pairs, os.path.join(out, 'pairs.png'), columns=2 * min(4, len(targets)))
  _save_timelapse(targets, result['frames'], os.path.join(out, 'timelapse.gif'))
  with files.atomic_path(os.path.join(out, 'latents.npz')) as tmp, open(tmp, 'wb') as f:
    np.savez(f, z=result['z'], targets=targets, reconstructions=reconstructions,
             **({} if result['classes'] is None else dict(classes=result['classes'])))

  training = sources.load_training_images(config)
  nearest, mean = baselines(targets, training)
  readout = read_out(network, targets, reconstructions, config.channels)
  pixel = result['pixel'].tolist()
  record = dict(
      step=int(state.step), targets=where, count=len(targets), steps=config.project_steps,
      lr=config.project_lr, starts=config.project_starts, prior_weight=PRIOR_WEIGHT,
      perceptual_weight=config.project_perceptual if features else 0.0,
      perceptual_network=features[0] if features else None,
      pixel_mse=pixel, perceptual=result['perceptual'].tolist() if features else None,
      nearest_training_mse=nearest.tolist(), mean_image_mse=mean.tolist(), readout=readout,
      classes=None if result['classes'] is None else result['classes'].tolist(),
      classes_from=classes_from,
      summary=dict(pixel_mse=float(np.mean(pixel)),
                   nearest_training_mse=float(nearest.mean()),
                   mean_image_mse=float(mean.mean())))
  with files.atomic_path(os.path.join(out, 'project.json')) as tmp, open(tmp, 'w') as f:
    json.dump(record, f, indent=1)
  logging.info('Projected %d images (%s) with the generator of step %d: pixel MSE %.4f, '
               'against %.4f for the nearest training image and %.4f for the mean image '
               '(in [-1, 1]); wrote %s', len(targets), where, int(state.step),
               record['summary']['pixel_mse'], record['summary']['nearest_training_mse'],
               record['summary']['mean_image_mse'], out)
  return record


def load_targets(config):
  """(uint8 images (N, R, R, C) to project, where they came from)."""
  shape = (config.resolution, config.resolution, config.channels)
  if config.project_images:
    if not os.path.exists(config.project_images):
      raise UsageError(f'--project_images={config.project_images}: no such folder or file')
    images = folder.load(config.project_images, shape, config)
    where = config.project_images
  elif config.dataset.startswith('folder:'):
    raise UsageError(f'{config.dataset} has no --project_split={config.project_split}: pass '
                     'the images to project with --project_images')
  else:
    images = sources.load_images(config, config.project_split)
    where = f'{config.dataset} {config.project_split} split'
  if not len(images):
    raise UsageError(f'no images to project in {where}')
  return np.asarray(images[:config.project_count]), where


def target_classes(config, count):
  """(the classes to draw the targets in, or None; where they come from) under --condition:
  the targets' labels where they have them (a split of the dataset), --sample_class, or None
  (found: optimise projects into every class)."""
  if not config.num_classes:
    return None, None
  if not config.project_images:
    return sources.load_classes(config, config.project_split)[:count], 'labels'
  if config.sample_class >= 0:
    return np.full(count, config.sample_class, np.int32), '--sample_class'
  return None, 'nearest projection'


def dataset_network(config):
  """(name, network) of the dataset's metrics, loaded (or trained) once: synthetic_faces'
  attribute network, a labelled dataset's class network; None for other datasets."""
  if evaluate.has_domain_metric(config):
    return 'attribute net', face_attributes.load_or_train(config)[0]
  labelled = sources.load_labels(config, 'train')
  if labelled is None:
    return None
  return 'class net', classifier.load_or_train(config, sources.load_images(config, 'train'),
                                               *labelled)[0]


def feature_network(config, network):
  """(name, module, read) of the perceptual distance, `read(module, images in [-1, 1] (B, R,
  R, C))` the features (B, F): Inception's with --inception_weights, else `network`'s
  (dataset_network's); None (pixels only) where --project_perceptual is 0 or there is no
  network."""
  if not config.project_perceptual:
    return None
  if config.inception_weights:
    model = fid.load_network(config.inception_weights)[0]
    return 'inception', model, lambda model, x: model(_as_inception_input(x))
  if network is None:
    logging.info('%s has neither an attribute network nor labels: projecting on pixels alone',
                 config.dataset)
    return None
  name, model = network
  return name, model, lambda model, x: model(_as_net_input(x))[0]


def read_out(network, targets, reconstructions, channels):
  """How `network` (dataset_network's) reads the reconstructions against their targets, or
  None: the attribute network's share of each categorical attribute read the same and the
  mean squared difference of the continuous ones (standardised units); the class network's
  share read as the same class."""
  if network is None:
    return None
  name, model = network
  if name == 'attribute net':
    _, continuous_t, classes_t = face_attributes.read_images(model, targets, channels)
    _, continuous_r, classes_r = face_attributes.read_images(model, reconstructions, channels)
    return dict(network=name, same_class={
        attribute: float(np.mean(np.asarray(a) == np.asarray(b)))
        for attribute, a, b in zip(face_attributes.CATEGORICAL, classes_t, classes_r)},
        continuous_mse=float(np.mean(np.square(np.asarray(continuous_t)
                                               - np.asarray(continuous_r)))))
  read = [classifier.read(model, face_attributes.to_input(x, channels))[1]
          for x in (targets, reconstructions)]
  return dict(network=name, same_class=float(np.mean(read[0] == read[1])))


def _as_inception_input(images):
  """Images in [-1, 1] as the FID's Inception reads them: 3 channels, resized to 299x299
  bilinearly as fid's 'pytorch_fid' resize does (which, being linear, commutes with the
  change of scale), kept differentiable."""
  if images.shape[-1] == 1:
    images = jnp.repeat(images, 3, axis=-1)
  size = inception.SIZE
  return jax.image.resize(images, (images.shape[0], size, size, 3), 'bilinear', antialias=False)


def _as_net_input(images):
  """Images in [-1, 1] as the feature networks read them (uint8's scale, 32x32, resized
  bicubic as data/preprocess.py resizes them for the metrics), kept differentiable."""
  if images.shape[1] != face_attributes.RESOLUTION:
    size = face_attributes.RESOLUTION
    images = jax.image.resize(images, (images.shape[0], size, size, images.shape[3]), 'cubic',
                              antialias=True)
  return (images + 1) * 127.5


def optimise(config, g, targets, features=None, classes=None):
  """The projection of uint8 `targets` with generator `g` (an NNX module, z -> [-1, 1]) and
  the perceptual distance of `features` ((module, read) of feature_network, or None):
  {z, classes, images, pixel, perceptual, frames}, the last the images of the first
  TIMELAPSE_IMAGES targets at TIMELAPSE_FRAMES points of the optimisation. Under
  --condition, each target is drawn in its class of `classes`; where None, it is projected
  in every class at once (a batch K times the targets) and the class whose projection ends
  nearest is kept.

  The networks' weights enter the compiled programs as arguments (`nets`), not as constants
  baked into each of them (Inception's would be ~95 MB a program)."""
  n, z_dim = len(targets), config.z_dim
  searched = config.num_classes if config.num_classes and classes is None else 1
  # Row j projects target j mod n, in class j // n where the classes are searched.
  target = jnp.tile(pipeline.to_float(jnp.asarray(targets)), (searched, 1, 1, 1))
  labels = (None if not config.num_classes else
            jnp.repeat(jnp.arange(searched, dtype=jnp.int32), n) if classes is None
            else jnp.asarray(classes, jnp.int32))
  weight = config.project_perceptual if features is not None else 0.0
  g_graph, g_weights = nnx.split(g)
  nets = dict(g=g_weights)
  if features is not None:
    f_graph, nets['f'] = nnx.split(features[0])

    def features_of(f_weights, images):
      return features[1](nnx.merge(f_graph, f_weights), images)

    nets['target_f'] = jax.jit(features_of)(nets['f'], target)
    nets['f_scale'] = jnp.mean(jnp.square(nets['target_f'])) + 1e-8

  def losses(z, nets):
    """Per row: (the loss, pixel MSE, perceptual distance), and the images."""
    images = nnx.merge(g_graph, nets['g'])(z, train=False, **of_classes(labels))
    pixel = jnp.mean(jnp.square(images - target), axis=(1, 2, 3))
    perceptual = (jnp.mean(jnp.square(features_of(nets['f'], images) - nets['target_f']),
                           axis=-1) / nets['f_scale'] if features is not None
                  else jnp.zeros(len(z)))
    prior = jnp.square(jnp.mean(jnp.square(z), axis=-1) - 1)
    return pixel + weight * perceptual + PRIOR_WEIGHT * prior, pixel, perceptual, images

  # The nearest of the random starts: each start's losses for all rows at once.
  starts = jax.random.normal(jax.random.PRNGKey(config.sample_seed),
                             (config.project_starts, searched * n, z_dim))
  loss_of = jax.jit(lambda z, nets: losses(z, nets)[0])
  start_losses = jnp.stack([loss_of(s, nets) for s in starts])
  z = starts[jnp.argmin(start_losses, axis=0), jnp.arange(searched * n)]

  tx = optax.adam(optax.cosine_decay_schedule(config.project_lr, config.project_steps))
  opt_state = tx.init(z)

  @jax.jit
  def step(z, opt_state, nets):
    grads = jax.grad(lambda z: losses(z, nets)[0].sum())(z)
    updates, opt_state = tx.update(grads, opt_state, z)
    return optax.apply_updates(z, updates), opt_state

  evaluate_z = jax.jit(losses)
  # TIMELAPSE_FRAMES points (all of them, for fewer steps), the first and the last among them.
  at = set(np.linspace(0, config.project_steps, TIMELAPSE_FRAMES).round().astype(int).tolist())
  frames = []
  for i in range(config.project_steps + 1):
    if i in at:
      frames.append(pipeline.to_uint8(evaluate_z(z, nets)[3]))
    if i < config.project_steps:
      z, opt_state = step(z, opt_state, nets)
  loss, pixel, perceptual, images = evaluate_z(z, nets)
  # Each target's row: its only one, or the class whose projection ended nearest.
  rows = jnp.argmin(loss.reshape(searched, n), axis=0) * n + jnp.arange(n)
  pick = lambda x: np.asarray(x)[np.asarray(rows)]
  return dict(z=pick(z), classes=None if labels is None else pick(labels), images=pick(images),
              pixel=pick(pixel), perceptual=pick(perceptual),
              frames=[pick(frame)[:TIMELAPSE_IMAGES] for frame in frames])


def baselines(targets, training, batch=4096):
  """Per target, the pixel MSE (in [-1, 1]) of its nearest training image and of the training
  images' mean: what a generator that only memorised, or only averaged, would score."""
  t = targets.reshape(len(targets), -1).astype(np.float64) / 127.5 - 1
  nearest = np.full(len(t), np.inf)
  total = np.zeros(t.shape[1])
  for i in range(0, len(training), batch):
    x = np.asarray(training[i:i + batch]).reshape(-1, t.shape[1]).astype(np.float64) / 127.5 - 1
    total += x.sum(axis=0)
    squared = (t**2).sum(1)[:, None] + (x**2).sum(1)[None] - 2 * t @ x.T
    nearest = np.minimum(nearest, np.maximum(squared, 0).min(axis=1))
  mean = total / len(training)
  return nearest / t.shape[1], ((t - mean)**2).mean(axis=1)


def _save_timelapse(targets, frames, path, scale=2):
  """An animated GIF: each frame the first targets (top row) over their reconstructions."""
  k = min(TIMELAPSE_IMAGES, len(targets))
  pictures = []
  for frame in frames:
    picture = visualize.grid(np.concatenate([targets[:k], frame[:k]]), columns=k)
    image = Image.fromarray(picture.squeeze())
    pictures.append(image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST))
  with files.atomic_path(path) as tmp:
    pictures[0].save(tmp, format='GIF', save_all=True, append_images=pictures[1:],
                     duration=200, loop=0)
