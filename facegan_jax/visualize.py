"""Image grids and loss curves written to the workdir."""

import math
import os
import re

import numpy as np
from PIL import Image

from facegan_jax import files, metrics_log


def grid(images, columns=None, pad=2):
  """uint8 (N, H, W, C) -> one uint8 image with the N images in rows, `pad` px apart."""
  n, h, w, c = images.shape
  columns = columns or math.ceil(math.sqrt(n))
  rows = math.ceil(n / columns)
  out = np.full((rows * (h + pad) + pad, columns * (w + pad) + pad, c), 255, np.uint8)
  for i, image in enumerate(images):
    y, x = pad + (i // columns) * (h + pad), pad + (i % columns) * (w + pad)
    out[y:y + h, x:x + w] = image
  return out


def save_grid(images, path, scale=2, columns=None):
  """Writes a grid PNG, upscaled (nearest) so that small images are visible."""
  image = grid(np.asarray(images), columns)
  if image.shape[-1] == 1:
    image = image[..., 0]
  pil = Image.fromarray(image)
  pil = pil.resize((pil.width * scale, pil.height * scale), Image.Resampling.NEAREST)
  with files.atomic_path(path) as tmp:
    pil.save(tmp)


def plot_losses(metrics_path, path):
  """D and G loss curves from metrics.jsonl."""
  rows = [row for row in metrics_log.read_rows(metrics_path) if 'd_loss' in row]
  if not rows:
    return
  # A Figure of its own, not pyplot's: files only, no display or global state; imported here,
  # as only training plots (~0.2 s of every other run's start otherwise).
  from matplotlib.figure import Figure  # noqa: PLC0415
  steps = [r['step'] for r in rows]
  fig = Figure(figsize=(6, 3.5), dpi=100)
  ax = fig.subplots()
  ax.plot(steps, [r['d_loss'] for r in rows], label='D loss')
  ax.plot(steps, [r['g_loss'] for r in rows], label='G loss')
  ax.set_xlabel('step')
  ax.set_ylabel('loss')
  ax.legend()
  ax.grid(alpha=0.3)
  fig.tight_layout()
  with files.atomic_path(path) as tmp:
    fig.savefig(tmp)


TIMELAPSE_FRAMES = 60  # at most: a long run's grids are thinned evenly, the last one kept


def write_timelapse(samples_dir, step, path, scale=2, max_frames=TIMELAPSE_FRAMES):
  """An animated GIF of the sample grids (samples_dir/step_NNNNNNN.png, saved `scale`x) up to
  `step`, at the grids' own size, the last frame held. Rebuilt from the grids at each call
  (~10 ms a frame), so a resumed run's timelapse is the uninterrupted run's: grids an
  interrupted run drew after `step` are left out."""
  steps = sorted(int(name[5:12]) for name in os.listdir(samples_dir)
                 if re.fullmatch(r'step_\d{7}\.png', name) and int(name[5:12]) <= step)
  if len(steps) > max_frames:
    steps = [steps[round(i * (len(steps) - 1) / (max_frames - 1))] for i in range(max_frames)]
  frames = []
  for s in steps:
    with Image.open(os.path.join(samples_dir, f'step_{s:07d}.png')) as image:
      image = image.convert('RGB')
      image = image.resize((image.width // scale, image.height // scale),
                           Image.Resampling.NEAREST)
      frames.append(image.quantize(256, method=Image.Quantize.FASTOCTREE))
  if not frames:
    return
  durations = [200] * (len(frames) - 1) + [1500]
  with files.atomic_path(path) as tmp:
    frames[0].save(tmp, format='GIF', save_all=True, append_images=frames[1:],
                   duration=durations, loop=0)
