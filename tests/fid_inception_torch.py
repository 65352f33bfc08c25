"""Plain-PyTorch reference of the FID Inception network, for tests only.

A transcription (torch.nn only, no torchvision) of what `pytorch_fid.inception.InceptionV3([3])`
computes with `use_fid_inception=True`: torchvision's `Inception3(num_classes=1008,
aux_logits=False, transform_input=False, init_weights=False)` with pytorch-fid's FID blocks
(FIDInceptionA for Mixed_5b..5d, FIDInceptionC for Mixed_6b..6e, FIDInceptionE_1 for Mixed_7b,
FIDInceptionE_2 for Mixed_7c). Module names reproduce their state_dict keys, so the weight file
pt_inception-2015-12-05-6726825d.pth loads with strict=True. The tests use it to check
facegan_jax's Flax port of the network against the original, layer for layer.

Unlike pytorch-fid's wrapper, `forward` neither resizes nor normalises: it takes NCHW input
already in [-1, 1] and returns the pool3 features (N, 2048).
"""

import math

import torch
import torch.nn.functional as F
from torch import nn


class BasicConv2d(nn.Module):
  """Conv (no bias) + BatchNorm(eps=1e-3) + ReLU."""

  def __init__(self, in_channels, out_channels, **kwargs):
    super().__init__()
    self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **kwargs)
    self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

  def forward(self, x):
    return F.relu(self.bn(self.conv(x)))


def _avg_pool(x):
  # The FID patch: TensorFlow's average pool leaves the zero padding out of the mean.
  return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class FIDInceptionA(nn.Module):
  """torchvision InceptionA with pytorch-fid's average-pool patch (Mixed_5b..5d)."""

  def __init__(self, in_channels, pool_features):
    super().__init__()
    self.branch1x1 = BasicConv2d(in_channels, 64, kernel_size=1)
    self.branch5x5_1 = BasicConv2d(in_channels, 48, kernel_size=1)
    self.branch5x5_2 = BasicConv2d(48, 64, kernel_size=5, padding=2)
    self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, kernel_size=1)
    self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
    self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)
    self.branch_pool = BasicConv2d(in_channels, pool_features, kernel_size=1)

  def forward(self, x):
    b1 = self.branch1x1(x)
    b5 = self.branch5x5_2(self.branch5x5_1(x))
    b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
    bp = self.branch_pool(_avg_pool(x))
    return torch.cat([b1, b5, b3, bp], 1)


class InceptionB(nn.Module):
  """torchvision InceptionB (Mixed_6a), unpatched."""

  def __init__(self, in_channels):
    super().__init__()
    self.branch3x3 = BasicConv2d(in_channels, 384, kernel_size=3, stride=2)
    self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, kernel_size=1)
    self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
    self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=2)

  def forward(self, x):
    b3 = self.branch3x3(x)
    bd = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
    bp = F.max_pool2d(x, kernel_size=3, stride=2)
    return torch.cat([b3, bd, bp], 1)


class FIDInceptionC(nn.Module):
  """torchvision InceptionC with pytorch-fid's average-pool patch (Mixed_6b..6e)."""

  def __init__(self, in_channels, channels_7x7):
    super().__init__()
    c7 = channels_7x7
    self.branch1x1 = BasicConv2d(in_channels, 192, kernel_size=1)
    self.branch7x7_1 = BasicConv2d(in_channels, c7, kernel_size=1)
    self.branch7x7_2 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
    self.branch7x7_3 = BasicConv2d(c7, 192, kernel_size=(7, 1), padding=(3, 0))
    self.branch7x7dbl_1 = BasicConv2d(in_channels, c7, kernel_size=1)
    self.branch7x7dbl_2 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
    self.branch7x7dbl_3 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
    self.branch7x7dbl_4 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
    self.branch7x7dbl_5 = BasicConv2d(c7, 192, kernel_size=(1, 7), padding=(0, 3))
    self.branch_pool = BasicConv2d(in_channels, 192, kernel_size=1)

  def forward(self, x):
    b1 = self.branch1x1(x)
    b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
    bd = self.branch7x7dbl_1(x)
    bd = self.branch7x7dbl_3(self.branch7x7dbl_2(bd))
    bd = self.branch7x7dbl_5(self.branch7x7dbl_4(bd))
    bp = self.branch_pool(_avg_pool(x))
    return torch.cat([b1, b7, bd, bp], 1)


class InceptionD(nn.Module):
  """torchvision InceptionD (Mixed_7a), unpatched."""

  def __init__(self, in_channels):
    super().__init__()
    self.branch3x3_1 = BasicConv2d(in_channels, 192, kernel_size=1)
    self.branch3x3_2 = BasicConv2d(192, 320, kernel_size=3, stride=2)
    self.branch7x7x3_1 = BasicConv2d(in_channels, 192, kernel_size=1)
    self.branch7x7x3_2 = BasicConv2d(192, 192, kernel_size=(1, 7), padding=(0, 3))
    self.branch7x7x3_3 = BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0))
    self.branch7x7x3_4 = BasicConv2d(192, 192, kernel_size=3, stride=2)

  def forward(self, x):
    b3 = self.branch3x3_2(self.branch3x3_1(x))
    b7 = self.branch7x7x3_2(self.branch7x7x3_1(x))
    b7 = self.branch7x7x3_4(self.branch7x7x3_3(b7))
    bp = F.max_pool2d(x, kernel_size=3, stride=2)
    return torch.cat([b3, b7, bp], 1)


class FIDInceptionE(nn.Module):
  """torchvision InceptionE with pytorch-fid's pool patch.

  pool='avg' is FIDInceptionE_1 (Mixed_7b, average pool without the padding);
  pool='max' is FIDInceptionE_2 (Mixed_7c, 3x3 stride-1 max pool).
  """

  def __init__(self, in_channels, pool):
    super().__init__()
    assert pool in ('avg', 'max'), pool
    self.pool = pool
    self.branch1x1 = BasicConv2d(in_channels, 320, kernel_size=1)
    self.branch3x3_1 = BasicConv2d(in_channels, 384, kernel_size=1)
    self.branch3x3_2a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
    self.branch3x3_2b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
    self.branch3x3dbl_1 = BasicConv2d(in_channels, 448, kernel_size=1)
    self.branch3x3dbl_2 = BasicConv2d(448, 384, kernel_size=3, padding=1)
    self.branch3x3dbl_3a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
    self.branch3x3dbl_3b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
    self.branch_pool = BasicConv2d(in_channels, 192, kernel_size=1)

  def forward(self, x):
    b1 = self.branch1x1(x)
    b3 = self.branch3x3_1(x)
    b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
    bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
    bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)
    if self.pool == 'avg':
      bp = _avg_pool(x)
    else:
      bp = F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
    bp = self.branch_pool(bp)
    return torch.cat([b1, b3, bd, bp], 1)


class FIDInceptionReference(nn.Module):
  """The FID Inception network up to pool3: [-1, 1] NCHW input (H, W >= 75) -> (N, 2048)."""

  def __init__(self):
    super().__init__()
    self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
    self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
    self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
    self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
    self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
    self.Mixed_5b = FIDInceptionA(192, pool_features=32)
    self.Mixed_5c = FIDInceptionA(256, pool_features=64)
    self.Mixed_5d = FIDInceptionA(288, pool_features=64)
    self.Mixed_6a = InceptionB(288)
    self.Mixed_6b = FIDInceptionC(768, channels_7x7=128)
    self.Mixed_6c = FIDInceptionC(768, channels_7x7=160)
    self.Mixed_6d = FIDInceptionC(768, channels_7x7=160)
    self.Mixed_6e = FIDInceptionC(768, channels_7x7=192)
    self.Mixed_7a = InceptionD(768)
    self.Mixed_7b = FIDInceptionE(1280, pool='avg')
    self.Mixed_7c = FIDInceptionE(2048, pool='max')
    # Unused by forward; kept so the weight file's 'fc.weight'/'fc.bias' load strictly.
    self.fc = nn.Linear(2048, 1008)

  def forward(self, x):
    x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
    x = F.max_pool2d(x, kernel_size=3, stride=2)
    x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
    x = F.max_pool2d(x, kernel_size=3, stride=2)
    for name in ('5b', '5c', '5d', '6a', '6b', '6c', '6d', '6e', '7a', '7b', '7c'):
      x = getattr(self, 'Mixed_' + name)(x)
    return torch.flatten(F.adaptive_avg_pool2d(x, (1, 1)), 1)


@torch.no_grad()
def randomized(seed=0):
  """The reference in eval mode with deterministic random weights that keep activations sane."""
  model = FIDInceptionReference().eval()
  g = torch.Generator().manual_seed(seed)

  def normal(t, std):
    t.copy_(torch.randn(t.shape, generator=g) * std)

  def uniform(t, lo, hi):
    t.copy_(lo + (hi - lo) * torch.rand(t.shape, generator=g))

  for m in model.modules():
    if isinstance(m, nn.Conv2d):
      fan_in = m.weight[0].numel()
      normal(m.weight, math.sqrt(2.0 / fan_in))
    elif isinstance(m, nn.BatchNorm2d):
      uniform(m.weight, 0.5, 1.5)
      normal(m.bias, 0.1)
      normal(m.running_mean, 0.1)
      uniform(m.running_var, 0.5, 1.5)
    elif isinstance(m, nn.Linear):
      normal(m.weight, 0.01)
      normal(m.bias, 0.01)
  return model
