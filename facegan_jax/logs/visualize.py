"""Image grids and loss curves written to the workdir."""

import math
import os
import re

import numpy as np
from PIL import Image

from facegan_jax.logs import metrics_log
from facegan_jax.run import files


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
  """Writes a grid PNG, upscaled (nearest) so that small images are visible; returns the
  grid (uint8 (H, W, C), not upscaled)."""
  image = grid(np.asarray(images), columns)
  pil = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
  pil = pil.resize((pil.width * scale, pil.height * scale), Image.Resampling.NEAREST)
  with files.atomic_path(path) as tmp:
    pil.save(tmp)
  return image


def plot_losses(metrics_path, path):
  """D and G loss curves from metrics.jsonl."""
  rows = [row for row in metrics_log.read_rows(metrics_path) if 'd_loss' in row]
  if not rows:
    return
  # A Figure of its own, not pyplot's: files only, no display or global state; imported here,
  # as only training plots (matplotlib's import would otherwise slow every run's start).
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


class Timelapse:
  """An animated GIF of the sample grids in `samples_dir` (step_NNNNNNN.png, saved `scale`x),
  at the grids' own size, the last frame held. Each grid is read and quantised once, the first
  time an update reaches it; the GIF is rewritten at each update (cheap beside a log
  interval, so no incremental GIF writer is needed)."""

  def __init__(self, samples_dir, path, scale=2, max_frames=TIMELAPSE_FRAMES):
    self.samples_dir, self.path, self.scale, self.max_frames = samples_dir, path, scale, max_frames
    self.frames = {}  # step -> palette frame

  def update(self, step):
    """Rewrites the GIF with the grids up to `step`: a resumed run's timelapse is the
    uninterrupted run's, without the grids an interrupted run drew after its checkpoint."""
    steps = sorted(int(name[5:12]) for name in os.listdir(self.samples_dir)
                   if re.fullmatch(r'step_\d{7}\.png', name) and int(name[5:12]) <= step)
    if len(steps) > self.max_frames:
      steps = [steps[round(i * (len(steps) - 1) / (self.max_frames - 1))]
               for i in range(self.max_frames)]
    if not steps:
      return
    for s in steps:
      if s not in self.frames:
        self.frames[s] = self._read(s)
    frames = [self.frames[s] for s in steps]
    durations = [200] * (len(frames) - 1) + [1500]
    with files.atomic_path(self.path) as tmp:
      frames[0].save(tmp, format='GIF', save_all=True, append_images=frames[1:],
                     duration=durations, loop=0)

  def _read(self, step):
    with Image.open(os.path.join(self.samples_dir, f'step_{step:07d}.png')) as image:
      image = image.convert('RGB')
      image = image.resize((image.width // self.scale, image.height // self.scale),
                           Image.Resampling.NEAREST)
      return image.quantize(256, method=Image.Quantize.FASTOCTREE)
