"""What the pictures in the workdir show: losses.png draws D's and G's losses against the step."""

import json

import matplotlib
import numpy as np
from PIL import Image

from facegan_jax.logs import visualize

# plot_losses draws D's loss first, G's second: matplotlib's first two cycle colours.
D_COLOUR, G_COLOUR = (np.round(255 * np.array(matplotlib.colors.to_rgb(c))) for c in
                      matplotlib.rcParams['axes.prop_cycle'].by_key()['color'][:2])


def curve_pixels(png, colour, tolerance=40):
  """(y, x) of the pixels of the PNG at path `png` drawn in `colour` (anti-aliasing blends a
  line's edges; its core keeps the colour)."""
  image = np.asarray(Image.open(png).convert('RGB')).astype(int)
  return np.argwhere(np.abs(image - colour).sum(axis=-1) < tolerance)


def _plot(tmp_path, name, d_losses, g_losses):
  rows = [dict(step=10 * i, d_loss=d, g_loss=g) for i, (d, g) in enumerate(zip(d_losses,
                                                                              g_losses))]
  rows.insert(3, dict(step=25, eval={'metrics': {}}))  # metrics.jsonl's evaluation lines
  metrics = tmp_path / f'{name}.jsonl'
  metrics.write_text(''.join(json.dumps(row) + '\n' for row in rows))
  png = str(tmp_path / f'{name}.png')
  visualize.plot_losses(str(metrics), png)
  return png


def _heights(pixels):
  """The median image row of a curve's pixels over the left and the right third of its
  columns (per-column medians: the legend's short sample of the colour, in a corner, is
  outvoted)."""
  columns = np.unique(pixels[:, 1])
  rows = np.array([np.median(pixels[pixels[:, 1] == x, 0]) for x in columns])
  third = len(columns) // 3
  return np.median(rows[:third]), np.median(rows[-third:])


def test_losses_png_draws_d_and_g_losses_against_the_step(tmp_path):
  flat, rising = [1.0] * 11, list(np.linspace(2.0, 4.0, 11))
  png = _plot(tmp_path, 'g_above', flat, rising)
  d, g = curve_pixels(png, D_COLOUR), curve_pixels(png, G_COLOUR)
  # Not blank: two curves across the plot (~470 px wide), beside the legend's samples.
  assert len(d) > 300 and len(g) > 300, (len(d), len(g))
  assert np.ptp(d[:, 1]) > 300 and np.ptp(g[:, 1]) > 300
  # Their shapes: D's loss flat, G's rising with the step (up the image, where rows count
  # down) and above D's.
  (d_left, d_right), (g_left, g_right) = _heights(d), _heights(g)
  assert abs(d_left - d_right) <= 2 and g_left - g_right > 100, (d_left, d_right, g_left, g_right)
  assert max(g_left, g_right) < d_left
  # Other data, another picture: the curves swapped.
  png = _plot(tmp_path, 'd_above', rising, flat)
  (d_left, d_right), (g_left, g_right) = (_heights(curve_pixels(png, colour))
                                          for colour in (D_COLOUR, G_COLOUR))
  assert abs(g_left - g_right) <= 2 and d_left - d_right > 100, (d_left, d_right, g_left, g_right)
  assert max(d_left, d_right) < g_left


def test_losses_png_waits_for_a_loss_to_plot(tmp_path):
  png = tmp_path / 'losses.png'
  visualize.plot_losses(str(tmp_path / 'metrics.jsonl'), str(png))  # no log yet
  (tmp_path / 'metrics.jsonl').write_text(json.dumps(dict(step=10, eval={})) + '\n')
  visualize.plot_losses(str(tmp_path / 'metrics.jsonl'), str(png))  # evaluations only
  assert not png.exists()


def test_timelapse_has_each_grid_up_to_the_step_at_its_size_thinned_evenly(tmp_path):
  """progress.gif: the saved grids up to `step` in order, at the grids' own size (the PNGs
  are saved 2x); an interrupted run's later grids are left out; a long run is thinned to
  max_frames, its first and last grids kept."""
  colours = {}
  for i, step in enumerate((10, 20, 30, 40, 50)):
    colour = (40 * i, 255 - 40 * i, 100)
    colours[step] = colour
    visualize.save_grid(np.full((4, 3, 3, 3), colour, np.uint8),
                        str(tmp_path / f'step_{step:07d}.png'))
  (tmp_path / 'step_0000060.png.tmp').write_bytes(b'')  # not a grid

  def frames(step, **kwargs):
    path = str(tmp_path / 'progress.gif')
    visualize.Timelapse(str(tmp_path), path, **kwargs).update(step)
    with Image.open(path) as gif:
      out = []
      for i in range(gif.n_frames):
        gif.seek(i)
        out.append(np.asarray(gif.convert('RGB')))
    return out

  shown = frames(35)
  assert len(shown) == 3 and shown[0].shape == visualize.grid(np.zeros((4, 3, 3, 3))).shape
  for frame, step in zip(shown, (10, 20, 30)):
    assert tuple(frame[3, 3]) == colours[step] and tuple(frame[0, 0]) == (255, 255, 255)
  thinned = frames(50, max_frames=3)
  assert [tuple(f[3, 3]) for f in thinned] == [colours[10], colours[30], colours[50]]
