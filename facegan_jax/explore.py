"""--mode=explore: the DCGAN paper's latent-space figures from the latest checkpoint's generator
(the EMA one when trained), in WORKDIR/explore/.

- interpolation.png: rows of --interpolate frames, each row a spherical interpolation between
  two random latents (Radford et al. 2015, Fig. 4; slerp as White 2016 recommends for
  Gaussian latents, whose mass lies near a sphere).
- arithmetic_ATTRIBUTE.png (synthetic_faces): latent arithmetic (Radford et al., Fig. 7). The
  attribute network reads --eval_samples generated faces; the mean latent of those it reads as
  having the attribute (glasses, a beard, long hair) minus the mean of those without is added to latents
  of other faces without it, once, twice and three times. Top row before, then a row per
  multiple; explore.json gives the share of faces the network reads as having the attribute
  at each.
- edit_ATTRIBUTE.png (synthetic_faces, after --mode=project with the same checkpoint): the
  same directions added to the latents of projected real faces. Rows: the real faces, their
  reconstructions, then a row per multiple; explore.json gives the share the attribute
  network reads as having the attribute in each row.
- latents.npz: every latent drawn (interpolation ends and frames, the arithmetic's pools,
  directions, befores and afters), so each figure can be redrawn.

Under --condition, G draws --sample_class, or with -1 each interpolation row a class in turn
(row r of class r mod K) and the arithmetic of class 0; explore.json names them.
"""

import json
import os

import jax
import numpy as np
from absl import logging

from facegan_jax import config as config_lib, state as state_lib
from facegan_jax.data import synthetic_faces
from facegan_jax.evaluation import face_attributes
from facegan_jax.logs import visualize
from facegan_jax.run import files
from facegan_jax.sample import load_latest

ROWS = 8  # rows of the interpolation figure, faces of each arithmetic figure
# A figure per attribute: the attribute network's categorical output, and its classes that
# count as having it.
ARITHMETIC = dict(glasses=('glasses', (1, 2)), beard=('beard', (1,)),
                  long_hair=('hair_style', (synthetic_faces.HAIR_STYLES.index('long'),)))
MIN_GROUP = 8  # faces on each side of an attribute for its mean latent to mean anything
MULTIPLES = (1, 2, 3)  # of the attribute's direction added, a row of the figure each


def slerp(a, b, t):
  """Spherical interpolation from latent(s) `a` (t = 0) to `b` (t = 1), along the last axis;
  linear where the two are (nearly) parallel."""
  a, b, t = np.asarray(a, np.float64), np.asarray(b, np.float64), np.asarray(t, np.float64)
  cos = np.sum(a * b, -1, keepdims=True) / (
      np.linalg.norm(a, axis=-1, keepdims=True) * np.linalg.norm(b, axis=-1, keepdims=True))
  omega = np.arccos(np.clip(cos, -1.0, 1.0))
  sin = np.sin(omega)
  safe = np.where(sin > 1e-6, sin, 1.0)
  spherical = (np.sin((1 - t) * omega) * a + np.sin(t * omega) * b) / safe
  return np.where(sin > 1e-6, spherical, (1 - t) * a + t * b)


def interpolation_latents(key, z_dim, rows, frames):
  """(rows * frames, z_dim) latents: row r goes from one random latent to another."""
  ends = np.asarray(jax.random.normal(key, (2, rows, 1, z_dim)))
  t = np.linspace(0.0, 1.0, frames)[None, :, None]
  return slerp(ends[0], ends[1], t).reshape(rows * frames, z_dim).astype(np.float32), ends


def attribute_arithmetic(config, generate, key, latents, projected=None):
  """{attribute: read-out} and the figures' images ({name: images}, with `edit_NAME` for the
  edits of `projected` real faces: (their latents, the uint8 faces, a function that draws
  latents of theirs, in rows of as many)); `latents` collects what was drawn."""
  model, _ = face_attributes.load_or_train(config)
  pool = np.asarray(jax.random.normal(key, (config.eval_samples, config.z_dim)), np.float32)
  _, _, classes = face_attributes.read_images(model, generate(pool), config.channels)
  codes = dict(zip(face_attributes.CATEGORICAL, (np.asarray(c) for c in classes)))
  latents['arithmetic_pool'] = pool
  readouts, figures = {}, {}
  for name, (output, classes_with) in ARITHMETIC.items():
    column = list(face_attributes.CATEGORICAL).index(output)  # of read_images' class codes
    has = np.isin(codes[output], classes_with)
    if has.sum() < MIN_GROUP or (~has).sum() < MIN_GROUP + ROWS:
      readouts[name] = dict(skipped=f'{int(has.sum())} of {len(has)} generated faces read as '
                            f'having {name}: too few on one side for a mean latent')
      continue
    # The means from all but the faces the figure shows, which are drawn from the rest.
    without = np.flatnonzero(~has)
    shown, rest = without[:ROWS], np.concatenate([np.flatnonzero(has), without[ROWS:]])
    direction = pool[rest][has[rest]].mean(0) - pool[rest][~has[rest]].mean(0)
    before = pool[shown]
    after = np.concatenate([before + k * direction for k in MULTIPLES])
    images = generate(np.concatenate([before, after]))
    _, _, read_after = face_attributes.read_images(model, images[ROWS:], config.channels)
    read = np.isin(read_after[column], classes_with)
    readouts[name] = dict(share_before=0.0,
                          share_after={f'{k}x': round(float(row.mean()), 4)
                                       for k, row in zip(MULTIPLES, read.reshape(-1, ROWS))},
                          share_in_pool=round(float(has.mean()), 4),
                          faces_with=int(has.sum()), faces_without=int((~has).sum()))
    latents.update({f'{name}_direction': direction, f'{name}_before': before,
                    f'{name}_after': after})
    figures[name] = images
    if projected is not None:
      z, faces = projected[0][:ROWS], projected[1][:ROWS]
      edited = projected[2](np.concatenate([z] + [z + k * direction for k in MULTIPLES]))
      rows = [faces] + np.split(edited, 1 + len(MULTIPLES))
      shares = [np.isin(face_attributes.read_images(model, row, config.channels)[2][column],
                        classes_with).mean() for row in rows]
      readouts[name]['real_faces'] = dict(
          count=len(z), share_real=round(float(shares[0]), 4),
          share_reconstructed=round(float(shares[1]), 4),
          share_after={f'{k}x': round(float(v), 4) for k, v in zip(MULTIPLES, shares[2:])})
      figures[f'edit_{name}'] = np.concatenate(rows)
  return readouts, figures


def projected_faces(workdir, step, generate):
  """(latents, uint8 faces, their generator: `generate` of their classes under --condition) of
  WORKDIR/project/ (--mode=project) when projected with the generator of `step`, else None
  (logged when they are of another step)."""
  path = os.path.join(workdir, 'project')
  if not os.path.exists(os.path.join(path, 'project.json')):
    return None
  with open(os.path.join(path, 'project.json')) as f:
    projected_at = json.load(f)['step']
  if projected_at != step:
    logging.warning('%s holds projections by the generator of step %d, not %d: rerun '
                    '--mode=project to edit real faces', path, projected_at, step)
    return None
  with np.load(os.path.join(path, 'latents.npz')) as saved:
    z, targets = saved['z'], saved['targets']
    classes = saved['classes'][:ROWS] if 'classes' in saved else None
  if classes is None:
    return z, targets, generate
  return z, targets, lambda z: generate(z, np.tile(classes, len(z) // len(classes)))


def of_class(generate, config, per_row=None):
  """`generate` (z -> uint8 images) of --sample_class under --condition: every image of it,
  or with -1 a class a row of the figure where its row length `per_row` is given (image i of
  class (i // per_row) mod K), else class 0. `generate` itself without --condition."""
  if not config.num_classes:
    return generate
  def of_classes(z):
    if config.sample_class >= 0 or per_row is None:
      return generate(z, np.full(len(z), max(config.sample_class, 0), np.int32))
    return generate(z, state_lib.class_rows(len(z), config.num_classes, per_row))
  return of_classes


def explore(config, workdir):
  """Writes WORKDIR/explore/ (see the module docstring); returns the arithmetic read-outs."""
  state, generate_any = load_latest(config, workdir)
  generate = of_class(generate_any, config)
  out = os.path.join(workdir, 'explore')
  os.makedirs(out, exist_ok=True)
  interpolation_key, arithmetic_key = jax.random.split(jax.random.PRNGKey(config.sample_seed))
  z, ends = interpolation_latents(interpolation_key, config.z_dim, ROWS, config.interpolate)
  latents = dict(interpolation=z, interpolation_ends=ends[:, :, 0])
  visualize.save_grid(of_class(generate_any, config, config.interpolate)(z),
                      os.path.join(out, 'interpolation.png'), columns=config.interpolate)
  readouts = {}
  if config_lib.is_synthetic_faces(config.dataset):
    projected = projected_faces(workdir, int(state.step), generate_any)
    readouts, figures = attribute_arithmetic(config, generate, arithmetic_key, latents,
                                             projected)
    for name, images in figures.items():
      columns = min(ROWS, len(projected[0])) if name.startswith('edit_') else ROWS
      visualize.save_grid(images, os.path.join(
          out, name + '.png' if name.startswith('edit_') else f'arithmetic_{name}.png'),
          columns=columns)
  with files.atomic_path(os.path.join(out, 'latents.npz')) as tmp, open(tmp, 'wb') as f:
    np.savez(f, **latents)
  summary = dict(step=int(state.step), sample_seed=config.sample_seed,
                 interpolate=config.interpolate, arithmetic=readouts)
  if config.num_classes:
    summary['classes'] = dict(
        interpolation=('row r: class r mod K' if config.sample_class < 0
                       else config.sample_class),
        arithmetic=max(config.sample_class, 0))
  with files.atomic_path(os.path.join(out, 'explore.json')) as tmp, open(tmp, 'w') as f:
    json.dump(summary, f, indent=1)
  for name, readout in readouts.items():
    if 'skipped' in readout:
      logging.info('Arithmetic on %s skipped: %s', name, readout['skipped'])
    else:
      logging.info('The %s direction: of %d faces without, %s read as having it after adding '
                   'it %s times', name.replace('_', ' '), ROWS,
                   ', '.join(f'{100 * v:.0f}%' for v in readout['share_after'].values()),
                   ', '.join(str(k) for k in MULTIPLES))
      if 'real_faces' in readout:
        real = readout['real_faces']
        logging.info('  on %d projected real faces: %.0f%% read as having it, %.0f%% of their '
                     'reconstructions, %s after adding it %s times', real['count'],
                     100 * real['share_real'], 100 * real['share_reconstructed'],
                     ', '.join(f'{100 * v:.0f}%' for v in real['share_after'].values()),
                     ', '.join(str(k) for k in MULTIPLES))
  logging.info('Wrote the latent-space figures of step %d to %s', int(state.step), out)
  return summary
