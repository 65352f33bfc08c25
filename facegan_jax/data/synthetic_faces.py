"""Procedural cartoon-face renderer: the offline `synthetic_faces` dataset.

Each face is a pure function of `(seed, index)`: the attributes are sampled
from `np.random.default_rng([seed, index])` and then drawn with PIL at
`_SUPERSAMPLE` times the output size and box-filtered down, which gives
anti-aliased edges at the cost of one cheap `Image.reduce`.
"""

import math

import numpy as np
from PIL import Image, ImageDraw

ATTRIBUTES = (
    'head_x', 'head_y', 'head_scale', 'head_aspect', 'jaw', 'tilt',
    'skin_r', 'skin_g', 'skin_b',
    'hair_style', 'hair_r', 'hair_g', 'hair_b',
    'eye_spacing', 'eye_size', 'iris_r', 'iris_g', 'iris_b', 'blink',
    'brow_height', 'brow_tilt', 'nose_size',
    'smile', 'mouth_width', 'mouth_open',
    'glasses', 'beard',
    'shirt_r', 'shirt_g', 'shirt_b',
    'bg_r', 'bg_g', 'bg_b', 'bg_gradient',
    'light_angle', 'light_strength',
)

# Categorical attributes are stored as float codes so every feature is float32.
HAIR_STYLES = ('bald', 'short', 'fringe', 'long', 'curly')
GLASSES = ('none', 'clear', 'sunglasses')
# The categorical attributes, which --condition can name: {attribute: its class names}.
CATEGORIES = dict(hair_style=HAIR_STYLES, glasses=GLASSES)

# Drawing at 4x and box-filtering is indistinguishable from 8x at 64 px.
_SUPERSAMPLE = 4

# Ordered light-to-dark so one uniform draw gives a plausible skin tone.
_SKIN_TONES = np.array([
    (255, 224, 196), (241, 194, 167), (224, 172, 138), (198, 134, 98),
    (160, 104, 70), (120, 74, 48), (86, 54, 36)], np.float32) / 255
_HAIR_COLOURS = np.array([
    (25, 20, 18), (60, 40, 28), (105, 70, 45), (140, 62, 32),
    (212, 176, 108), (236, 214, 160), (150, 150, 150), (222, 222, 216),
], np.float32) / 255
_HAIR_COLOUR_WEIGHTS = np.array([6, 6, 4, 2, 2, 1, 1, 1], np.float64)
_IRIS_COLOURS = np.array([
    (90, 55, 30), (50, 30, 20), (70, 120, 185), (70, 130, 80),
    (120, 130, 140), (140, 110, 50)], np.float32) / 255

# Feature rows in head-local units (head height radius = 1, +y down the face).
_EYE_Y, _NOSE_Y, _MOUTH_Y = -0.02, 0.26, 0.55
# Eye spacing and mouth width are relative to a face of average width.
_MEAN_ASPECT = 0.82

_N_OUTLINE = 40
_THETA = np.linspace(0, 2 * np.pi, _N_OUTLINE, endpoint=False)
_CIRCLE = np.stack([np.cos(_THETA), np.sin(_THETA)], axis=1)


def sample_attributes(rng: np.random.Generator) -> dict[str, float]:
  """Samples one face's generating attributes (keys = ATTRIBUTES)."""
  a = {}
  a['head_x'] = rng.uniform(0.42, 0.58)
  a['head_y'] = rng.uniform(0.40, 0.50)
  a['head_scale'] = rng.uniform(0.22, 0.29)
  a['head_aspect'] = rng.uniform(0.72, 0.92)
  a['jaw'] = rng.uniform(0.0, 0.3)
  a['tilt'] = np.clip(rng.normal(0.0, 0.12), -0.35, 0.35)
  tone = rng.uniform(0, len(_SKIN_TONES) - 1)
  lo = min(int(tone), len(_SKIN_TONES) - 2)
  skin_rgb = _SKIN_TONES[lo] + (tone - lo) * (_SKIN_TONES[lo + 1] - _SKIN_TONES[lo])
  skin_rgb = np.clip(skin_rgb + rng.normal(0, 0.02, 3), 0, 1)
  a['skin_r'], a['skin_g'], a['skin_b'] = skin_rgb
  a['hair_style'] = rng.choice(len(HAIR_STYLES), p=[0.1, 0.3, 0.2, 0.25, 0.15])
  if rng.uniform() < 0.05:  # Occasional dyed hair keeps the colour space open.
    hair_rgb = rng.uniform(0.1, 0.9, 3)
  else:
    w = _HAIR_COLOUR_WEIGHTS / _HAIR_COLOUR_WEIGHTS.sum()
    hair_rgb = _HAIR_COLOURS[rng.choice(len(_HAIR_COLOURS), p=w)]
    hair_rgb = np.clip(hair_rgb * rng.uniform(0.85, 1.15), 0, 1)
  a['hair_r'], a['hair_g'], a['hair_b'] = hair_rgb
  a['eye_spacing'] = rng.uniform(0.30, 0.42)
  a['eye_size'] = rng.uniform(0.11, 0.17)
  iris = _IRIS_COLOURS[rng.integers(len(_IRIS_COLOURS))]
  a['iris_r'], a['iris_g'], a['iris_b'] = np.clip(iris + rng.normal(0, 0.03, 3), 0, 1)
  # Most faces have open eyes; a few are half or fully closed.
  a['blink'] = rng.uniform(0.3, 1.0) if rng.uniform() < 0.12 else 0.0
  a['brow_height'] = rng.uniform(0.0, 0.12)
  a['brow_tilt'] = rng.uniform(-0.08, 0.08)
  a['nose_size'] = rng.uniform(0.7, 1.3)
  a['smile'] = rng.uniform(-0.4, 1.0)
  a['mouth_width'] = rng.uniform(0.22, 0.36)
  a['mouth_open'] = rng.uniform(0.0, 1.0) if rng.uniform() < 0.35 else 0.0
  a['glasses'] = rng.choice(len(GLASSES), p=[0.72, 0.2, 0.08])
  a['beard'] = float(rng.uniform() < 0.18)
  a['shirt_r'], a['shirt_g'], a['shirt_b'] = _muted_colour(rng, 0.08, 0.9)
  a['bg_r'], a['bg_g'], a['bg_b'] = _muted_colour(rng, 0.15, 0.95)
  a['bg_gradient'] = rng.uniform(-0.35, 0.35)
  a['light_angle'] = rng.uniform(-np.pi, np.pi)
  a['light_strength'] = rng.uniform(0.0, 0.35)
  return {k: float(a[k]) for k in ATTRIBUTES}


def _muted_colour(rng: np.random.Generator, low: float, high: float) -> np.ndarray:
  """A random RGB colour pulled towards grey, as photo backdrops and clothes are."""
  rgb = rng.uniform(low, high, 3)
  return rgb.mean() + rng.uniform(0.3, 1.0) * (rgb - rgb.mean())


def _rgba(rgb, scale: float = 1.0) -> tuple[int, int, int, int]:
  r, g, b = (min(255, max(0, int(255 * c * scale))) for c in rgb)
  return (r, g, b, 255)


def _ellipse(cx, cy, rx, ry) -> np.ndarray:
  return _CIRCLE * (rx, ry) + (cx, cy)


def draw_face(a: dict[str, float], size: int = 64) -> np.ndarray:
  """Draws the face described by attributes `a` as a (size, size, 3) uint8 image."""
  canvas = size * _SUPERSAMPLE
  layer = Image.new('RGBA', (canvas, canvas), (0, 0, 0, 0))
  draw = ImageDraw.Draw(layer)
  r = a['head_scale'] * canvas
  centre = np.array([a['head_x'], a['head_y']]) * canvas
  cos_t, sin_t = math.cos(a['tilt']), math.sin(a['tilt'])
  # Maps head-local units to canvas pixels, rotating by the tilt.
  to_canvas = r * np.array([[cos_t, sin_t], [-sin_t, cos_t]])

  def poly(pts, fill, head=True):
    xy = pts @ to_canvas + centre if head else pts * r + centre
    draw.polygon(xy.ravel().tolist(), fill=fill)

  def line(pts, fill, width):
    xy = np.asarray(pts) @ to_canvas + centre
    draw.line(xy.ravel().tolist(), fill=fill, width=max(1, round(width * r)),
              joint='curve')

  skin = (a['skin_r'], a['skin_g'], a['skin_b'])
  hair = (a['hair_r'], a['hair_g'], a['hair_b'])
  aspect, style = a['head_aspect'], HAIR_STYLES[int(a['hair_style'])]
  eye_x = a['eye_spacing'] * aspect / _MEAN_ASPECT

  # Body stays upright; only the head tilts.
  shirt = (a['shirt_r'], a['shirt_g'], a['shirt_b'])
  poly(_ellipse(0, 2.0, 1.7, 0.85), _rgba(shirt), head=False)
  poly(np.array([[-0.33, 0.3], [0.33, 0.3], [0.36, 1.35], [-0.36, 1.35]]) * (aspect, 1),
       _rgba(skin, 0.82), head=False)

  if style == 'long':
    top = _ellipse(0, -0.05, aspect * 1.18, 1.12)[_N_OUTLINE // 2:]
    poly(np.concatenate([[[-aspect * 1.3, 1.25]], top, [[aspect * 1.3, 1.25]]]),
         _rgba(hair, 0.8))
  elif style == 'curly':
    bumps = 1 + 0.06 * np.sin(11 * _THETA)[:, None]
    # Ends above the chin so the curls never read as a beard.
    poly(_CIRCLE * bumps * (aspect * 1.35, 1.15) + (0, -0.25), _rgba(hair))

  for side in (-1, 1):  # Ears.
    poly(_ellipse(side * aspect * 0.97, 0.08, 0.14, 0.22), _rgba(skin, 0.9))

  # An egg outline: the lower half narrows towards the chin by `jaw`.
  head = _CIRCLE * (aspect, 1.0)
  head[:, 0] *= 1 - a['jaw'] * np.clip(_CIRCLE[:, 1], 0, 1) ** 2
  poly(head, _rgba(skin))

  if a['beard']:
    # Outline indices run right -> chin -> left, so no re-sorting is needed.
    lower = head[_CIRCLE[:, 1] > 0.2] * 1.03
    u = np.linspace(lower[-1, 0], lower[0, 0], 9)
    # The top edge rises to the cheeks at the sides and dips under the nose.
    upper = np.stack([u, lower[0, 1] + 0.16 * (1 - (u / lower[0, 0]) ** 2)], 1)
    poly(np.concatenate([lower, upper]), _rgba(hair, 0.9))

  if style in ('short', 'fringe', 'long', 'curly'):
    low = {'short': -0.5, 'fringe': -0.28, 'long': -0.45, 'curly': -0.5}[style]
    side_v = -0.05 if style != 'short' else -0.2
    side_angle = math.asin(side_v)
    arc_t = np.linspace(np.pi - side_angle, 2 * np.pi + side_angle, 24)
    arc = np.stack([np.cos(arc_t), np.sin(arc_t)], 1) * (aspect * 1.07, 1.08)
    u = np.linspace(arc[-1, 0], arc[0, 0], 15)
    v = low + (side_v - low) * np.abs(u / arc[0, 0]) ** 3
    if style == 'fringe':  # Jagged bangs read as separate locks of hair.
      v[1:-1:2] += 0.08
    poly(np.concatenate([arc, np.stack([u, v], 1)]), _rgba(hair))

  eye_r = a['eye_size']
  for side in (-1, 1):
    ex, ey = side * eye_x, _EYE_Y
    poly(_ellipse(ex, ey, eye_r * 1.3, eye_r), (250, 250, 248, 255))
    poly(_ellipse(ex, ey + 0.01, eye_r * 0.85, eye_r * 0.85),
         _rgba((a['iris_r'], a['iris_g'], a['iris_b'])))
    poly(_ellipse(ex, ey + 0.01, eye_r * 0.42, eye_r * 0.42), (10, 10, 12, 255))
    # The upper lid is skin drawn over the eye; its edge is the lash line.
    lid_v = ey - eye_r * (1 - 2 * a['blink'])
    lid_top = _ellipse(ex, ey, eye_r * 1.45, eye_r * 1.25)[_N_OUTLINE // 2:]
    poly(np.concatenate([lid_top, [[ex + eye_r * 1.45, lid_v], [ex - eye_r * 1.45, lid_v]]]),
         _rgba(skin))
    line([[ex - eye_r * 1.35, lid_v + 0.02], [ex + eye_r * 1.35, lid_v + 0.02]],
         (35, 25, 22, 255), 0.05)
    by, bt = ey - eye_r - 0.12 - a['brow_height'], a['brow_tilt']
    brow = [[ex - side * 0.15, by + bt], [ex, by - 0.03], [ex + side * 0.15, by - bt * 0.5]]
    line(brow, _rgba(hair, 0.7), 0.07)

  ns = a['nose_size']
  poly(_ellipse(0.0, _NOSE_Y, 0.09 * ns, 0.07 * ns), _rgba(skin, 0.84))
  line([[0.02, _NOSE_Y - 0.21], [0.035 * ns, _NOSE_Y - 0.04]], _rgba(skin, 0.8), 0.035)

  mw, smile, mouth_y = a['mouth_width'] * aspect / _MEAN_ASPECT, a['smile'], _MOUTH_Y
  u = np.linspace(-mw, mw, 11)
  curve = smile * 0.12 * (1 - (u / mw) ** 2)
  upper = np.stack([u, mouth_y + curve - 0.04 * smile * (u / mw) ** 2], 1)
  lip = _rgba((skin[0] * 0.8, skin[1] * 0.45, skin[2] * 0.45))
  if a['mouth_open'] > 0.1:
    drop = (0.05 + 0.16 * a['mouth_open']) * (1 - (u / mw) ** 2)
    lower = np.stack([u, mouth_y + curve + drop], 1)
    poly(np.concatenate([upper, lower[::-1]]), lip)
    inner = np.concatenate([upper[1:-1] + (0, 0.02), lower[-2:0:-1] - (0, 0.03)])
    poly(inner, (70, 18, 22, 255))
    if smile > 0.3:  # A wide smile shows the upper teeth.
      teeth = np.concatenate([upper[2:-2] + (0, 0.02), upper[-3:1:-1] + (0, 0.06)])
      poly(teeth, (245, 242, 235, 255))
  else:
    line(upper, lip, 0.07)

  if a['glasses']:
    frame = (25, 25, 30, 255)
    for side in (-1, 1):
      rim = _ellipse(side * eye_x, _EYE_Y, 0.24, 0.19)
      if GLASSES[int(a['glasses'])] == 'sunglasses':
        poly(rim, (30, 30, 40, 255))
      line(np.concatenate([rim, rim[:1]]), frame, 0.045)
    line([[-0.09, _EYE_Y - 0.04], [0.09, _EYE_Y - 0.04]], frame, 0.045)

  fg = np.asarray(layer.reduce(_SUPERSAMPLE), np.float32) / 255
  return _composite(fg, a, size)


def _composite(fg: np.ndarray, a: dict[str, float], size: int) -> np.ndarray:
  """Lights the figure and lays it over the gradient background."""
  coords = (np.arange(size, dtype=np.float32) + 0.5) / size
  y, x = coords[:, None], coords[None, :]
  light = (math.cos(a['light_angle']) * (x - a['head_x'])
           + math.sin(a['light_angle']) * (y - a['head_y'])) / a['head_scale']
  shade = np.clip(1 + a['light_strength'] * light, 0.5, 1.4)[..., None]
  bg = np.array([a['bg_r'], a['bg_g'], a['bg_b']], np.float32)
  bg = bg * (1 + a['bg_gradient'] * (y - 0.5) * 2)[..., None]
  alpha = fg[..., 3:]
  out = fg[..., :3] * shade * alpha + bg * (1 - alpha)
  return (np.clip(out, 0, 1) * 255 + 0.5).astype(np.uint8)


def render_face(seed: int, index: int, size: int = 64) -> tuple[np.ndarray, dict[str, float]]:
  """Renders face `index` of stream `seed`: (uint8 (size, size, 3) image, attributes)."""
  attributes = sample_attributes(np.random.default_rng([seed, index]))
  return draw_face(attributes, size), attributes
