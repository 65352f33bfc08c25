"""Turning images of any size and mode into the model's square uint8 arrays."""

import numpy as np
from PIL import Image


def to_model_images(images, resolution, channels, crop=None):
  """Center-crops to square and resizes (antialiased bicubic) each image to the model's shape.

  Args:
    images: uint8 (N, H, W, C) with C in {1, 3}, or a sequence of such HWC arrays.
    resolution: output height and width.
    channels: 1 (grayscale) or 3 (RGB).
    crop: side of the centered square to keep (at most the shorter side); default the
      shorter side.
  Returns:
    uint8 (N, resolution, resolution, channels).
  """
  mode = 'L' if channels == 1 else 'RGB'
  out = np.empty((len(images), resolution, resolution, channels), np.uint8)
  for i, image in enumerate(images):
    image = np.asarray(image)
    if (image.shape[:2] == (resolution, resolution) and image.shape[-1] == channels
        and crop is None):
      out[i] = image
      continue
    pil = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).convert(mode)
    w, h = pil.size
    side = min(w, h, crop or w)
    pil = pil.crop(((w - side) // 2, (h - side) // 2, (w + side) // 2, (h + side) // 2))
    pil = pil.resize((resolution, resolution), Image.Resampling.BICUBIC)
    out[i] = np.asarray(pil).reshape(resolution, resolution, channels)
  return out
