"""The FID Inception network in Flax NNX: pool3 features (2048 per image).

This is the TF Inception-v3 graph of 2015-12-05 that FID is defined on, as packaged by
pytorch-fid (torchvision's Inception3 with FID-specific blocks): BatchNorm eps 1e-3; the
average pools inside the A, C and first E blocks leave padding out of the average (count
excluded); the last E block max-pools its pool branch. Attribute names follow pytorch-fid's
state_dict, so its weight file loads by name (`load_state_dict`).

Images go in as uint8 NHWC and are resized to 299x299 by one of RESIZE_MODES, recorded with
every number computed from them:
- 'pytorch_fid': bilinear, half-pixel centres, no antialiasing (torch's F.interpolate with
  align_corners=False, pytorch-fid's default);
- 'clean_fid': PIL bicubic on each channel in float, then clipped to [0, 255] (clean-fid).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from PIL import Image

from facegan_jax.evaluation import RESIZE_MODES

SIZE = 299
FEATURES = 2048


class BasicConv(nnx.Module):
  """Conv (no bias) + BatchNorm (inference, eps 1e-3) + ReLU, torchvision's BasicConv2d."""

  def __init__(self, cin, cout, kernel, stride=1, padding=0):
    kernel = (kernel, kernel) if isinstance(kernel, int) else kernel
    padding = (padding, padding) if isinstance(padding, int) else padding
    self.kernel = nnx.Param(jnp.zeros(kernel + (cin, cout)))  # HWIO
    self.scale, self.bias = nnx.Param(jnp.ones(cout)), nnx.Param(jnp.zeros(cout))
    self.mean, self.var = nnx.BatchStat(jnp.zeros(cout)), nnx.BatchStat(jnp.ones(cout))
    self.stride, self.padding = stride, tuple((p, p) for p in padding)

  def __call__(self, x):
    if MATMUL_CONVS and jax.default_backend() == 'cpu':
      y = _conv_as_matmul(x, self.kernel[...], self.stride, self.padding)
    else:
      y = jax.lax.conv_general_dilated(x, self.kernel[...], (self.stride,) * 2, self.padding,
                                       dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    inv = self.scale[...] * jax.lax.rsqrt(self.var[...] + 1e-3)
    return jax.nn.relu(y * inv + (self.bias[...] - self.mean[...] * inv))


# On CPU, convolutions as im2col matmuls, which XLA runs faster than its own convolutions
# there (the same features to float rounding); pools stay reduce_window, as slices gained
# nothing.
MATMUL_CONVS = True


def _windows(x, kh, kw, stride, padding):
  """The kh*kw shifted, strided views of x (N, H, W, C) padded by `padding`, one per tap."""
  x = jnp.pad(x, ((0, 0), *padding, (0, 0)))
  ho = (x.shape[1] - kh) // stride + 1
  wo = (x.shape[2] - kw) // stride + 1
  return [x[:, i:i + stride * (ho - 1) + 1:stride, j:j + stride * (wo - 1) + 1:stride]
          for i in range(kh) for j in range(kw)]


def _conv_as_matmul(x, kernel, stride, padding):
  """The convolution as one matmul over the taps stacked on the channel axis (im2col): XLA on
  CPU runs matmuls faster than its convolutions (MATMUL_CONVS)."""
  kh, kw, cin, cout = kernel.shape
  taps = _windows(x, kh, kw, stride, padding)
  patches = taps[0] if len(taps) == 1 else jnp.concatenate(taps, axis=-1)
  return jnp.dot(patches, kernel.reshape(kh * kw * cin, cout))


def _pool(x, kind, stride, padding):
  """3x3 pooling; 'avg' averages over the window's unpadded pixels only."""
  window, strides = (1, 3, 3, 1), (1, stride, stride, 1)
  pads = ((0, 0), (padding, padding), (padding, padding), (0, 0))
  if kind == 'max':
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, window, strides, pads)
  total = jax.lax.reduce_window(x, 0.0, jax.lax.add, window, strides, pads)
  count = jax.lax.reduce_window(jnp.ones((1,) + x.shape[1:3] + (1,), x.dtype), 0.0,
                                jax.lax.add, window, strides, pads)
  return total / count


class InceptionA(nnx.Module):
  def __init__(self, cin, pool_features):
    self.branch1x1 = BasicConv(cin, 64, 1)
    self.branch5x5_1, self.branch5x5_2 = BasicConv(cin, 48, 1), BasicConv(48, 64, 5, padding=2)
    self.branch3x3dbl_1 = BasicConv(cin, 64, 1)
    self.branch3x3dbl_2 = BasicConv(64, 96, 3, padding=1)
    self.branch3x3dbl_3 = BasicConv(96, 96, 3, padding=1)
    self.branch_pool = BasicConv(cin, pool_features, 1)

  def __call__(self, x):
    return jnp.concatenate([
        self.branch1x1(x), self.branch5x5_2(self.branch5x5_1(x)),
        self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
        self.branch_pool(_pool(x, 'avg', 1, 1))], axis=-1)


class InceptionB(nnx.Module):
  def __init__(self, cin):
    self.branch3x3 = BasicConv(cin, 384, 3, stride=2)
    self.branch3x3dbl_1 = BasicConv(cin, 64, 1)
    self.branch3x3dbl_2 = BasicConv(64, 96, 3, padding=1)
    self.branch3x3dbl_3 = BasicConv(96, 96, 3, stride=2)

  def __call__(self, x):
    return jnp.concatenate([
        self.branch3x3(x), self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
        _pool(x, 'max', 2, 0)], axis=-1)


class InceptionC(nnx.Module):
  def __init__(self, cin, c7):
    self.branch1x1 = BasicConv(cin, 192, 1)
    self.branch7x7_1 = BasicConv(cin, c7, 1)
    self.branch7x7_2 = BasicConv(c7, c7, (1, 7), padding=(0, 3))
    self.branch7x7_3 = BasicConv(c7, 192, (7, 1), padding=(3, 0))
    self.branch7x7dbl_1 = BasicConv(cin, c7, 1)
    self.branch7x7dbl_2 = BasicConv(c7, c7, (7, 1), padding=(3, 0))
    self.branch7x7dbl_3 = BasicConv(c7, c7, (1, 7), padding=(0, 3))
    self.branch7x7dbl_4 = BasicConv(c7, c7, (7, 1), padding=(3, 0))
    self.branch7x7dbl_5 = BasicConv(c7, 192, (1, 7), padding=(0, 3))
    self.branch_pool = BasicConv(cin, 192, 1)

  def __call__(self, x):
    b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
    d7 = x
    for i in range(1, 6):
      d7 = getattr(self, f'branch7x7dbl_{i}')(d7)
    return jnp.concatenate([self.branch1x1(x), b7, d7,
                            self.branch_pool(_pool(x, 'avg', 1, 1))], axis=-1)


class InceptionD(nnx.Module):
  def __init__(self, cin):
    self.branch3x3_1 = BasicConv(cin, 192, 1)
    self.branch3x3_2 = BasicConv(192, 320, 3, stride=2)
    self.branch7x7x3_1 = BasicConv(cin, 192, 1)
    self.branch7x7x3_2 = BasicConv(192, 192, (1, 7), padding=(0, 3))
    self.branch7x7x3_3 = BasicConv(192, 192, (7, 1), padding=(3, 0))
    self.branch7x7x3_4 = BasicConv(192, 192, 3, stride=2)

  def __call__(self, x):
    b7 = x
    for i in range(1, 5):
      b7 = getattr(self, f'branch7x7x3_{i}')(b7)
    return jnp.concatenate([self.branch3x3_2(self.branch3x3_1(x)), b7,
                            _pool(x, 'max', 2, 0)], axis=-1)


class InceptionE(nnx.Module):
  def __init__(self, cin, pool):
    self.branch1x1 = BasicConv(cin, 320, 1)
    self.branch3x3_1 = BasicConv(cin, 384, 1)
    self.branch3x3_2a = BasicConv(384, 384, (1, 3), padding=(0, 1))
    self.branch3x3_2b = BasicConv(384, 384, (3, 1), padding=(1, 0))
    self.branch3x3dbl_1 = BasicConv(cin, 448, 1)
    self.branch3x3dbl_2 = BasicConv(448, 384, 3, padding=1)
    self.branch3x3dbl_3a = BasicConv(384, 384, (1, 3), padding=(0, 1))
    self.branch3x3dbl_3b = BasicConv(384, 384, (3, 1), padding=(1, 0))
    self.branch_pool = BasicConv(cin, 192, 1)
    self.pool = pool  # 'avg' (Mixed_7b) or 'max' (Mixed_7c, as in the FID graph)

  def __call__(self, x):
    b3 = self.branch3x3_1(x)
    d3 = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
    return jnp.concatenate([
        self.branch1x1(x), self.branch3x3_2a(b3), self.branch3x3_2b(b3),
        self.branch3x3dbl_3a(d3), self.branch3x3dbl_3b(d3),
        self.branch_pool(_pool(x, self.pool, 1, 1))], axis=-1)


class FIDInception(nnx.Module):
  """(N, 299, 299, 3) in [-1, 1] -> (N, 2048) pool3 features."""

  def __init__(self):
    self.Conv2d_1a_3x3 = BasicConv(3, 32, 3, stride=2)
    self.Conv2d_2a_3x3 = BasicConv(32, 32, 3)
    self.Conv2d_2b_3x3 = BasicConv(32, 64, 3, padding=1)
    self.Conv2d_3b_1x1 = BasicConv(64, 80, 1)
    self.Conv2d_4a_3x3 = BasicConv(80, 192, 3)
    self.Mixed_5b, self.Mixed_5c = InceptionA(192, 32), InceptionA(256, 64)
    self.Mixed_5d = InceptionA(288, 64)
    self.Mixed_6a = InceptionB(288)
    self.Mixed_6b, self.Mixed_6c = InceptionC(768, 128), InceptionC(768, 160)
    self.Mixed_6d, self.Mixed_6e = InceptionC(768, 160), InceptionC(768, 192)
    self.Mixed_7a = InceptionD(768)
    self.Mixed_7b, self.Mixed_7c = InceptionE(1280, 'avg'), InceptionE(2048, 'max')

  def __call__(self, x):
    x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
    x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(_pool(x, 'max', 2, 0)))
    x = _pool(x, 'max', 2, 0)
    for name in ('5b', '5c', '5d', '6a', '6b', '6c', '6d', '6e', '7a', '7b', '7c'):
      x = getattr(self, f'Mixed_{name}')(x)
    return jnp.mean(x, axis=(1, 2))


# torch BatchNorm2d / Conv2d names -> BasicConv attributes.
_FIELDS = {'conv.weight': 'kernel', 'bn.weight': 'scale', 'bn.bias': 'bias',
           'bn.running_mean': 'mean', 'bn.running_var': 'var'}
_IGNORED = ('fc.weight', 'fc.bias')  # the ImageNet classifier, not part of the features


def load_state_dict(model, state_dict):
  """Sets `model`'s arrays from pytorch-fid's state_dict ({name: numpy array}).

  Every BasicConv must be set exactly once and every name used; a mismatch is an error
  naming the first offending entry.
  """
  expected = {f'{".".join(map(str, path[:-1]))}.{torch_name}'
              for path, _ in nnx.iter_graph(model) if path and path[-1] == 'kernel'
              for torch_name in _FIELDS}
  for name, value in state_dict.items():
    if name in _IGNORED or name.endswith('num_batches_tracked'):
      continue
    if name not in expected:
      raise ValueError(f'unexpected array {name!r} for the FID Inception network')
    *path, layer, field = name.split('.')
    module = functools.reduce(getattr, path, model)
    value = np.asarray(value, np.float32)
    target = getattr(module, _FIELDS[f'{layer}.{field}'])
    to_torch = (3, 2, 0, 1) if field == 'weight' and layer == 'conv' else (0,)  # HWIO -> OIHW
    needed = tuple(target.shape[i] for i in to_torch)
    if value.shape != needed:
      raise ValueError(f'{name} has shape {value.shape}, the network needs {needed}')
    value = value.transpose(np.argsort(to_torch))
    target.set_value(jax.device_put(value))  # a transfer: no program compiled per shape
    expected.discard(name)
  if expected:
    raise ValueError(f'the weights lack {sorted(expected)[0]} (and {len(expected) - 1} more)')


def resize(images, mode):
  """uint8 (N, H, W, 3) -> float32 (N, 299, 299, 3) in [-1, 1], by one of RESIZE_MODES."""
  if mode == 'pytorch_fid':
    x = jnp.asarray(images, jnp.float32) / 255
    x = jax.image.resize(x, (x.shape[0], SIZE, SIZE, 3), 'bilinear', antialias=False)
    return 2 * x - 1
  if mode == 'clean_fid':
    out = np.empty((len(images), SIZE, SIZE, 3), np.float32)
    for i, image in enumerate(np.asarray(images)):
      for c in range(3):
        channel = Image.fromarray(image[..., c].astype(np.float32), mode='F')
        out[i, ..., c] = np.asarray(channel.resize((SIZE, SIZE), Image.BICUBIC))
    return jnp.asarray(np.clip(out, 0, 255) / 127.5 - 1)
  raise ValueError(f'resize mode {mode!r}; expected one of {RESIZE_MODES}')
