"""PyTorch eager reference of our GAN architectures, timed in the pytorch/examples DCGAN loop.

  python benchmarks/torch_reference.py

The models mirror facegan_jax/models/{dcgan,mlp,resnet}.py layer for layer (same shapes,
parameter counts and init), so benchmarks/train_throughput.py can put the two throughputs side
by side. The SNGAN ResNets are the textbook form (nearest upsampling then a 3x3 convolution,
a 3x3 convolution then average pooling), as Mimicry writes them, with PyTorch's spectral norm
on D, trained in SNGAN's loop (hinge loss, --d_steps D updates per G update).
torch is an optional dependency: importing this module raises ImportError without it.
"""

import os
import sys
import time

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from facegan_jax import presets  # noqa: E402
from facegan_jax.models.dcgan import num_stages  # noqa: E402


def preset(name, **overrides):
  """The architecture of facegan_jax's preset `name` (config.preset), with `overrides` of its
  Config fields."""
  c = presets.preset(name, **overrides)
  return dict(model=c.model, resolution=c.resolution, conv_dim=c.conv_dim, z_dim=c.z_dim,
              channels=c.channels, g_first_bn=c.g_first_bn, hidden_dim=c.hidden_dim,
              dropout=c.d_dropout, d_steps=c.d_steps)


class DCGenerator(nn.Module):
  """z (B, z_dim) -> images (B, channels, R, R) in [-1, 1]."""

  def __init__(self, resolution, conv_dim, z_dim, channels, g_first_bn):
    super().__init__()
    self.base, n = num_stages(resolution)
    self.width = conv_dim * 2**(n - 1)
    # A following BatchNorm cancels any bias, so the projection has one only without it.
    self.project = nn.Linear(z_dim, self.base**2 * self.width, bias=not g_first_bn)
    self.project_bn = nn.BatchNorm2d(self.width) if g_first_bn else nn.Identity()
    layers = []
    for i in range(1, n):
      c_in, c_out = conv_dim * 2**(n - i), conv_dim * 2**(n - i - 1)
      layers += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out),
                 nn.ReLU()]
    layers += [nn.ConvTranspose2d(conv_dim, channels, 4, 2, 1, bias=True), nn.Tanh()]
    self.ups = nn.Sequential(*layers)

  def forward(self, z):
    x = self.project(z).view(-1, self.width, self.base, self.base)
    return self.ups(torch.relu(self.project_bn(x)))


class DCDiscriminator(nn.Module):
  """images (B, channels, R, R) -> logits (B,)."""

  def __init__(self, resolution, conv_dim, channels, **unused):
    super().__init__()
    base, n = num_stages(resolution)
    layers = [nn.Conv2d(channels, conv_dim, 4, 2, 1, bias=True), nn.LeakyReLU(0.2)]
    for i in range(1, n):
      c_in, c_out = conv_dim * 2**(i - 1), conv_dim * 2**i
      layers += [nn.Conv2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out),
                 nn.LeakyReLU(0.2)]
    layers += [nn.Flatten(), nn.Linear(base * base * conv_dim * 2**(n - 1), 1)]
    self.net = nn.Sequential(*layers)

  def forward(self, x):
    return self.net(x)[:, 0]


def _mlp(dims, hidden_tail):
  """Linear layers through `dims`, LeakyReLU(0.2) plus `hidden_tail()` after each hidden one."""
  layers = []
  for a, b in zip(dims[:-2], dims[1:-1]):
    layers += [nn.Linear(a, b), nn.LeakyReLU(0.2), *hidden_tail()]
  return layers + [nn.Linear(dims[-2], dims[-1])]


class MLPGenerator(nn.Module):
  """z -> h -> 2h -> 4h -> image (B, channels, R, R), tanh output."""

  def __init__(self, resolution, hidden_dim, z_dim, channels, **unused):
    super().__init__()
    self.shape = (channels, resolution, resolution)
    h, out = hidden_dim, resolution * resolution * channels
    self.net = nn.Sequential(*_mlp([z_dim, h, 2 * h, 4 * h, out], lambda: []), nn.Tanh())

  def forward(self, z):
    return self.net(z).view(-1, *self.shape)


class MLPDiscriminator(nn.Module):
  """image -> 4h -> 2h -> h -> logit, LeakyReLU(0.2) and dropout on hidden layers."""

  def __init__(self, resolution, hidden_dim, channels, dropout=0.3, **unused):
    super().__init__()
    h, inp = hidden_dim, resolution * resolution * channels
    self.net = nn.Sequential(nn.Flatten(),
                             *_mlp([inp, 4 * h, 2 * h, h, 1], lambda: [nn.Dropout(dropout)]))

  def forward(self, x):
    return self.net(x)[:, 0]


def _xavier(layer, gain=1.0):
  """SNGAN's init, Xavier-uniform with `gain` and a zero bias, on `layer` (spectral-normed or
  not); returns it."""
  weight = (layer.parametrizations.weight.original if hasattr(layer, 'parametrizations')
            else layer.weight)
  nn.init.xavier_uniform_(weight, gain)
  if layer.bias is not None:
    nn.init.zeros_(layer.bias)
  return layer


class GBlock(nn.Module):
  """BN-ReLU-upsample-conv3x3-BN-ReLU-conv3x3 plus upsample-conv1x1 (no biases before the
  BatchNorms that follow, as facegan_jax's)."""

  def __init__(self, c_in, c_out):
    super().__init__()
    self.b1, self.b2 = nn.BatchNorm2d(c_in), nn.BatchNorm2d(c_out)
    self.c1 = _xavier(nn.Conv2d(c_in, c_out, 3, 1, 1, bias=False), 2**0.5)
    self.c2 = _xavier(nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False), 2**0.5)
    self.c_sc = _xavier(nn.Conv2d(c_in, c_out, 1, bias=False))

  def forward(self, x):
    up = nn.functional.interpolate
    h = self.c1(up(torch.relu(self.b1(x)), scale_factor=2, mode='nearest'))
    h = self.c2(torch.relu(self.b2(h)))
    return h + self.c_sc(up(x, scale_factor=2, mode='nearest'))


class DBlock(nn.Module):
  """[ReLU]-conv3x3-ReLU-conv3x3[-avgpool] plus a shortcut; `first`: SNGAN's optimized block."""

  def __init__(self, c_in, c_out, downsample, first):
    super().__init__()
    sn = nn.utils.parametrizations.spectral_norm
    hidden = c_out if first else c_in
    self.c1 = _xavier(sn(nn.Conv2d(c_in, hidden, 3, 1, 1)), 2**0.5)
    self.c2 = _xavier(sn(nn.Conv2d(hidden, c_out, 3, 1, 1)), 2**0.5)
    learnable = first or downsample or c_in != c_out
    self.c_sc = _xavier(sn(nn.Conv2d(c_in, c_out, 1))) if learnable else None
    self.downsample, self.first = downsample, first

  def forward(self, x):
    pool = nn.functional.avg_pool2d
    h = self.c2(torch.relu(self.c1(x if self.first else torch.relu(x))))
    if self.downsample:
      h = pool(h, 2)
    if self.c_sc is None:
      return h + x
    if self.first:
      return h + self.c_sc(pool(x, 2))
    return h + (pool(self.c_sc(x), 2) if self.downsample else self.c_sc(x))


class ResNetGenerator(nn.Module):
  def __init__(self, resolution, conv_dim, z_dim, channels, **unused):
    super().__init__()
    from facegan_jax.models.resnet import LAYOUTS  # the widths only; it imports JAX
    widths = [conv_dim * m for m in LAYOUTS[resolution][0]]
    self.width = widths[0]
    self.project = _xavier(nn.Linear(z_dim, 16 * widths[0], bias=False))
    self.blocks = nn.Sequential(*[GBlock(a, b) for a, b in zip(widths, widths[1:])])
    self.bn = nn.BatchNorm2d(widths[-1])
    self.to_rgb = _xavier(nn.Conv2d(widths[-1], channels, 3, 1, 1))

  def forward(self, z):
    x = self.blocks(self.project(z).view(-1, self.width, 4, 4))
    return torch.tanh(self.to_rgb(torch.relu(self.bn(x))))


class ResNetDiscriminator(nn.Module):
  def __init__(self, resolution, conv_dim, channels, **unused):
    super().__init__()
    from facegan_jax.models.resnet import LAYOUTS
    layout = LAYOUTS[resolution][1]
    widths = [channels] + [conv_dim * m for m, _ in layout]
    self.blocks = nn.Sequential(*[DBlock(widths[i], widths[i + 1], down, i == 0)
                                  for i, (_, down) in enumerate(layout)])
    self.logit = _xavier(nn.utils.parametrizations.spectral_norm(nn.Linear(widths[-1], 1)))

  def forward(self, x):
    return self.logit(torch.relu(self.blocks(x)).sum(dim=(2, 3)))[:, 0]


def _init(module):
  """DCGAN init: weights N(0, 0.02), biases 0; BatchNorm scale N(1, 0.02), shift 0."""
  if isinstance(module, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
    nn.init.normal_(module.weight, 0.0, 0.02)
    if module.bias is not None:
      nn.init.zeros_(module.bias)
  elif isinstance(module, nn.BatchNorm2d):
    nn.init.normal_(module.weight, 1.0, 0.02)
    nn.init.zeros_(module.bias)


def build(preset_name, **overrides):
  """(G, D) for `preset_name`, with config fields replaced by `overrides`."""
  cfg = preset(preset_name, **overrides)
  model = cfg.pop('model')
  cfg.pop('d_steps')
  if model == 'dcgan':
    cfg.pop('dropout', None)
    cfg.pop('hidden_dim', None)
    g, d = DCGenerator(**cfg), DCDiscriminator(**cfg)
  elif model == 'mlp':
    g, d = MLPGenerator(**cfg), MLPDiscriminator(**cfg)
  elif model == 'resnet':
    return ResNetGenerator(**cfg), ResNetDiscriminator(**cfg)  # initialised as built
  else:
    raise ValueError(f'unknown model {model!r}')
  return g.apply(_init), d.apply(_init)


def param_counts(preset_name, **overrides):
  """(G, D) trainable parameter counts (BatchNorm running statistics excluded)."""
  return tuple(sum(p.numel() for p in m.parameters()) for m in build(preset_name, **overrides))


def images_per_sec(preset_name, batch_size, steps=20, warmup=3, threads=None, compile=False,
                   precision='fp32', **overrides):
  """Real images/s of the pytorch/examples DCGAN iteration (D real+fake step, then G step),
  or for the ResNets SNGAN's (--d_steps D steps, each on its own real batch, then G's), on
  the GPU when there is one; `precision='bf16'` runs the forward passes under bfloat16 autocast
  (PyTorch's mixed precision: float32 weights and optimizer)."""
  return speed_meter(preset_name, batch_size, warmup, threads, compile, precision,
                     **overrides)(steps)


def speed_meter(preset_name, batch_size, warmup=3, threads=None, compile=False,
                precision='fp32', **overrides):
  """images_per_sec's models and step after `warmup` iterations, as a function of a number of
  timed steps returning images/s: callers alternate its rounds with their own."""
  torch.set_num_threads(threads or os.cpu_count())
  torch.manual_seed(0)
  device = 'cuda' if torch.cuda.is_available() else 'cpu'
  torch.backends.cudnn.benchmark = True  # as pytorch/examples' DCGAN: the fastest cuDNN kernels
  cfg = preset(preset_name, **overrides)
  g, d = (m.to(device) for m in build(preset_name, **overrides))
  z_dim = cfg['z_dim']
  autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=precision == 'bf16')
  if compile:
    try:
      g, d = torch.compile(g), torch.compile(d)
      d(g(torch.randn(2, z_dim, device=device)))  # compile errors surface on the first call
    except Exception as e:
      raise RuntimeError(f'torch.compile does not work on this machine: {e}') from e
  betas = (0.0, 0.9) if cfg['model'] == 'resnet' else (0.5, 0.999)  # SNGAN's, DCGAN's
  opt_g = torch.optim.Adam(g.parameters(), lr=2e-4, betas=betas)
  opt_d = torch.optim.Adam(d.parameters(), lr=2e-4, betas=betas)
  bce = nn.BCEWithLogitsLoss()
  # Data is pre-generated so the timing covers the training step alone, not a loader.
  shape = (cfg['channels'], cfg['resolution'], cfg['resolution'])
  real = torch.rand(batch_size, *shape, device=device) * 2 - 1
  real_label = torch.full((batch_size,), 0.9, device=device)  # one-sided label smoothing
  fake_label = torch.zeros(batch_size, device=device)
  gen_label = torch.ones(batch_size, device=device)

  def dcgan_step():
    d.zero_grad()
    with autocast:
      err_d_real = bce(d(real).float(), real_label)
    err_d_real.backward()
    with autocast:
      fake = g(torch.randn(batch_size, z_dim, device=device))
      err_d_fake = bce(d(fake.detach()).float(), fake_label)
    err_d_fake.backward()
    opt_d.step()
    g.zero_grad()
    with autocast:
      err_g = bce(d(fake).float(), gen_label)
    err_g.backward()
    opt_g.step()

  def sngan_step():  # Mimicry's: --d_steps hinge D updates on fresh fakes, then G's
    for _ in range(cfg['d_steps']):
      d.zero_grad()
      with autocast:
        fake = g(torch.randn(batch_size, z_dim, device=device)).detach()
        err_d = (torch.relu(1 - d(real).float()).mean()
                 + torch.relu(1 + d(fake).float()).mean())
      err_d.backward()
      opt_d.step()
    g.zero_grad()
    with autocast:
      err_g = -d(g(torch.randn(batch_size, z_dim, device=device))).float().mean()
    err_g.backward()
    opt_g.step()

  step = sngan_step if cfg['model'] == 'resnet' else dcgan_step

  def sync():
    if device == 'cuda':
      torch.cuda.synchronize()

  for _ in range(warmup):
    step()
  sync()
  images_per_step = batch_size * (cfg['d_steps'] if cfg['model'] == 'resnet' else 1)

  def measure(steps):
    start = time.perf_counter()
    for _ in range(steps):
      step()
    sync()
    return images_per_step * steps / (time.perf_counter() - start)
  return measure


if __name__ == '__main__':
  print(f'{"preset":<10} {"batch":>5} {"G params":>10} {"D params":>10} {"img/s":>9}')
  for name in ('udacity32', 'dcgan64', 'mnist_mlp', 'sngan32', 'sngan64'):
    n_g, n_d = param_counts(name)
    print(f'{name:<10} {64:>5} {n_g:>10,} {n_d:>10,} {images_per_sec(name, 64):>9.1f}',
          flush=True)
