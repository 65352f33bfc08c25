"""R3GAN's own PyTorch networks and loss (github.com/brownvc/R3GAN): the golden values that
tests/test_r3gan_reference.py checks facegan_jax's port against, and a PyTorch speed peer.

  python benchmarks/r3gan_reference.py --source DIR --write_golden
  python benchmarks/r3gan_reference.py --source DIR --widths=32,32,32,16 --batch=64 --steps=5

DIR is an extracted tree of that repository (its R3GAN/ and torch_utils/ folders); nothing of
it is copied here: its modules are imported from DIR at run time. It needs torch (not in
requirements-test.txt): a venv with torch and requirements.txt runs both modes.

--write_golden records the variance of each parameter at their initialisation (averaged over
INIT_DRAWS seeds), then builds their Generator and Discriminator at GOLDEN_CONFIG's small
size with random weights (the zero-initialised layers and biases too, so that every block's
branch counts) and records what their code computes: G's images, D's logits on reals and on
G's images, RpGAN's D and G losses, R1 and R2 (E over the batch of the per-example sum of
squared input gradients; D's loss adds γ/2 times each), and the parameter gradients of both
losses. On a CPU their fused bias-activation and resampling ops run their own plain-PyTorch
forms (torch_utils/ops: bias_act's and upfirdn2d's 'ref' implementations; no CUDA extension
is built).

Without --write_golden it times their G and D trained eagerly in their loop (a D step with
RpGAN + R1 + R2, then a G step; Adam betas (0, 0.99)), as torch_reference.py times the
other families, and prints images/s after --warmup iterations.

`our_params` (numpy only, no torch) carries their parameters over to facegan_jax's layout.
"""

import argparse
import hashlib
import importlib
import importlib.util
import json
import math
import os
import sys
import time
import types

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from facegan_jax import config as config_lib  # noqa: E402
from facegan_jax import validation  # noqa: E402
from facegan_jax.errors import UsageError  # noqa: E402
from facegan_jax.models import r3gan  # noqa: E402

GOLDEN = os.path.join(ROOT, 'tests', 'data', 'r3gan_golden.npz')
GOLDEN_COMMAND = 'python benchmarks/r3gan_reference.py --source DIR --write_golden'
# Three stages (16 px), a width change (the 1x1 transition convolutions) and one without,
# two blocks in a stage (the fix-up initialisation's gain counts all 4), grouped 3x3
# convolutions throughout; small, so that the golden file stays under 200 KB.
GOLDEN_FLAGS = dict(model='r3gan', resolution=16, widths='16,8,8', blocks='1,2,1',
                    groups='4,2,2', z_dim=8, loss='rpgan', r1_gamma=0.5)
GOLDEN_CONFIG = config_lib.Config(**GOLDEN_FLAGS)
GOLDEN_BATCH = 4
INIT_DRAWS = 16
SOURCE_FILES = ('R3GAN/Networks.py', 'R3GAN/FusedOperators.py', 'R3GAN/Resamplers.py',
                'R3GAN/Trainer.py')

# Their residual block's parameters -> ours (models/r3gan.py ResidualBlock).
BLOCK = {'LinearLayer1.Layer.weight': 'expand.kernel', 'NonLinearity1.Bias': 'act1.bias',
         'LinearLayer2.Layer.weight': 'grouped.kernel', 'NonLinearity2.Bias': 'act2.bias',
         'LinearLayer3.Layer.weight': 'project.kernel'}


def _hwio(weight):
  """A PyTorch convolution weight (O, I / groups, kh, kw) as ours (kh, kw, I / groups, O)."""
  return weight.transpose(2, 3, 1, 0)


def our_params(theirs, role, blocks):
  """{our parameter path: array} of G (`role` 'G') or D ('D') from their module's
  {named_parameters name: array} (or gradients by the same names); `blocks` per stage of G,
  from 4x4 up. Every array of theirs must find a place (ValueError if not)."""
  theirs = dict(theirs)
  take = theirs.pop
  ours = {}

  def block(their_prefix, our_prefix):
    for name, path in BLOCK.items():
      value = take(f'{their_prefix}.{name}')
      ours[f'{our_prefix}.{path}'] = _hwio(value) if value.ndim == 4 else value

  def transition(name, our_path):
    if name in theirs:  # only where the width changes
      ours[our_path] = _hwio(take(name))

  if role == 'G':
    # The first stage's transition is the 4x4 basis, (C, 4, 4) times a Linear (out, in) of z.
    ours['basis'] = take('MainLayers.0.Layers.0.Basis').transpose(1, 2, 0)
    ours['to_basis.kernel'] = take('MainLayers.0.Layers.0.LinearLayer.weight').T
    for s, n in enumerate(blocks):
      if s:
        transition(f'MainLayers.{s}.Layers.0.LinearLayer.Layer.weight', f'widen.{s - 1}.kernel')
      for j in range(n):
        block(f'MainLayers.{s}.Layers.{j + 1}', f'stages.{s}.{j}')
    ours['to_image.kernel'] = _hwio(take('AggregationLayer.Layer.weight'))
  else:
    blocks = blocks[::-1]  # D's stages from the image down
    ours['from_image.kernel'] = _hwio(take('ExtractionLayer.Layer.weight'))
    for s, n in enumerate(blocks):
      for j in range(n):
        block(f'MainLayers.{s}.Layers.{j}', f'stages.{s}.{j}')
      if s < len(blocks) - 1:
        transition(f'MainLayers.{s}.Layers.{n}.LinearLayer.Layer.weight', f'narrow.{s}.kernel')
    # The last transition: a 4x4 depthwise convolution (C, 1, 4, 4), then a Linear (1, C).
    last = f'MainLayers.{len(blocks) - 1}.Layers.{blocks[-1]}'
    ours['basis'] = take(f'{last}.Basis.weight')[:, 0].transpose(1, 2, 0)
    ours['logit.kernel'] = take(f'{last}.LinearLayer.weight').T
  if theirs:
    raise ValueError(f'{role}: no place in ours for {sorted(theirs)}')
  return ours


def import_reference(source):
  """Their R3GAN.Networks and R3GAN.Trainer modules, imported from the tree at `source`."""
  if importlib.util.find_spec('pkg_resources') is None:
    # torch_utils/ops/conv2d_gradfix.py takes parse_version from pkg_resources, which
    # recent setuptools no longer ships (84 has none); packaging's is the same function.
    from packaging.version import parse
    sys.modules['pkg_resources'] = types.SimpleNamespace(parse_version=parse)
  sys.path.insert(0, os.path.abspath(source))
  return (importlib.import_module('R3GAN.Networks'), importlib.import_module('R3GAN.Trainer'))


def reference_models(networks, config):
  """Their (Generator, Discriminator) at facegan_jax `config`'s --widths, --blocks, --groups
  (theirs always make 3 channels)."""
  if config.channels != 3:
    raise ValueError(f'--channels={config.channels}: their networks make RGB images only')
  widths, blocks, groups = r3gan.stages(config)
  g = networks.Generator(NoiseDimension=config.z_dim, WidthPerStage=widths,
                         CardinalityPerStage=groups, BlocksPerStage=blocks,
                         ExpansionFactor=r3gan.EXPANSION)
  d = networks.Discriminator(WidthPerStage=widths[::-1], CardinalityPerStage=groups[::-1],
                             BlocksPerStage=blocks[::-1], ExpansionFactor=r3gan.EXPANSION)
  return g, d


def _init_variances(networks, config):
  """{'init_var.G.name' or 'init_var.D.name': E[w²]} of their initialisation of each
  parameter (all of zero mean), averaged over INIT_DRAWS seeds."""
  import torch
  variances = {}
  for seed in range(INIT_DRAWS):
    torch.manual_seed(seed)
    for role, module in zip('GD', reference_models(networks, config)):
      for name, parameter in module.named_parameters():
        key = f'init_var.{role}.{name}'
        mean_square = parameter.detach().double().square().mean().item()
        variances[key] = variances.get(key, 0.0) + mean_square / INIT_DRAWS
  return {k: np.float64(v) for k, v in variances.items()}


def _perturb(module, generator):
  """Adds noise to every parameter: N(0, 0.3 / sqrt(fan-in)) to weights, N(0, 0.1) to
  biases, so the layers that start at zero (each block's last, the biases) are not."""
  import torch
  with torch.no_grad():
    for parameter in module.parameters():
      scale = 0.3 / math.sqrt(parameter[0].numel()) if parameter.ndim > 1 else 0.1
      parameter.add_(scale * torch.randn(parameter.shape, generator=generator))


def _numpy(tensor):
  return tensor.detach().numpy().astype(np.float32)


def _nhwc(tensor):
  return _numpy(tensor.permute(0, 2, 3, 1))


def golden_record(source, seed=0):
  """The golden file's contents: their weights (their names and layouts), inputs and what
  their code computes from them at GOLDEN_CONFIG."""
  import torch
  networks, trainer = import_reference(source)
  init_variances = _init_variances(networks, GOLDEN_CONFIG)
  torch.manual_seed(seed)  # their initialisation
  g, d = reference_models(networks, GOLDEN_CONFIG)
  generator = torch.Generator().manual_seed(seed + 1)
  _perturb(g, generator)
  _perturb(d, generator)
  z = torch.randn(GOLDEN_BATCH, GOLDEN_CONFIG.z_dim, generator=generator)
  size = GOLDEN_CONFIG.resolution
  real = 2 * torch.rand(GOLDEN_BATCH, 3, size, size, generator=generator) - 1

  gamma = GOLDEN_CONFIG.r1_gamma
  training = trainer.AdversarialTraining(g, d)
  d_adv, _, r1, r2 = training.AccumulateDiscriminatorGradients(z, real, None, gamma)
  d_grads = {f'd_grad.{k}': _numpy(p.grad) for k, p in d.named_parameters()}
  g.zero_grad(set_to_none=True)
  d.requires_grad_(False)  # as their loop: G's step differentiates G alone
  g_adv, _ = training.AccumulateGeneratorGradients(z, real, None)
  g_grads = {f'g_grad.{k}': _numpy(p.grad) for k, p in g.named_parameters()}
  with torch.no_grad():
    fake = g(z)
    real_logits, fake_logits = d(real), d(fake)

  digest = hashlib.sha256()
  for name in SOURCE_FILES:
    with open(os.path.join(source, name), 'rb') as f:
      digest.update(f.read())
  return dict(
      **{f'G.{k}': _numpy(p) for k, p in g.named_parameters()},
      **{f'D.{k}': _numpy(p) for k, p in d.named_parameters()},
      z=_numpy(z), real=_nhwc(real), fake=_nhwc(fake), real_logits=_numpy(real_logits),
      fake_logits=_numpy(fake_logits), d_loss=_numpy(d_adv.mean()), r1=_numpy(r1.mean()),
      r2=_numpy(r2.mean()), d_total=_numpy((d_adv + gamma / 2 * (r1 + r2)).mean()),
      g_loss=_numpy(g_adv.mean()), **d_grads, **g_grads, **init_variances,
      config=np.str_(json.dumps(GOLDEN_FLAGS)), source_sha256=np.str_(digest.hexdigest()),
      torch_version=np.str_(torch.__version__), numpy_version=np.str_(np.__version__),
      command=np.str_(GOLDEN_COMMAND))


def speed_meter(source, config, batch_size, gamma, warmup, threads=None):
  """Their G and D at `config` after `warmup` iterations of their training loop, as a
  function of a number of timed iterations returning real images/s."""
  import torch
  torch.set_num_threads(threads or os.cpu_count())
  torch.manual_seed(0)
  networks, trainer = import_reference(source)
  g, d = reference_models(networks, config)
  training = trainer.AdversarialTraining(g, d)
  # Their Adam: lr 2e-4 and beta2 0.99 are where their presets' schedules start and end.
  opt_g = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.0, 0.99), eps=1e-8)
  opt_d = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.0, 0.99), eps=1e-8)
  size = config.resolution
  # Data is pre-generated so the timing covers the training step alone, not a loader.
  real = torch.rand(batch_size, 3, size, size) * 2 - 1
  g.requires_grad_(False)
  d.requires_grad_(False)

  def phase(module, opt, accumulate):  # as their training_loop.py runs each phase
    opt.zero_grad(set_to_none=True)
    module.requires_grad_(True)
    accumulate(torch.randn(batch_size, config.z_dim))
    module.requires_grad_(False)
    opt.step()

  def step():
    phase(d, opt_d, lambda z: training.AccumulateDiscriminatorGradients(z, real, None, gamma))
    phase(g, opt_g, lambda z: training.AccumulateGeneratorGradients(z, real, None))

  for _ in range(warmup):
    step()

  def measure(steps):
    start = time.perf_counter()
    for _ in range(steps):
      step()
    return batch_size * steps / (time.perf_counter() - start)
  return measure


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--source', required=True, help='an extracted brownvc/R3GAN tree')
  parser.add_argument('--write_golden', action='store_true', help=f'write {GOLDEN}')
  parser.add_argument('--widths', default='32,32,32,16', help="G's stage widths from 4x4 up")
  parser.add_argument('--blocks', default='1', help='blocks per stage')
  parser.add_argument('--groups', default='', help='groups per stage (empty: as ours)')
  parser.add_argument('--resolution', type=int, default=None,
                      help='image size (default: what --widths make, 4 * 2^(stages - 1))')
  parser.add_argument('--z_dim', type=int, default=64, help="their presets' noise size")
  parser.add_argument('--batch', type=int, default=64)
  parser.add_argument('--gamma', type=float, default=0.05, help='R1 and R2 weight γ')
  parser.add_argument('--steps', type=int, default=5, help='timed iterations')
  parser.add_argument('--warmup', type=int, default=2, help='untimed iterations first')
  parser.add_argument('--threads', type=int, default=None, help='default: all CPUs')
  args = parser.parse_args()
  if args.write_golden:
    np.savez_compressed(GOLDEN, **golden_record(args.source))
    print(f'wrote {GOLDEN} ({os.path.getsize(GOLDEN)} bytes); check the port against it: '
          'python -m pytest tests/test_r3gan_reference.py')
    return
  stages = len(args.widths.split(','))
  config = config_lib.Config(model='r3gan', widths=args.widths, blocks=args.blocks,
                             groups=args.groups, z_dim=args.z_dim, loss='rpgan',
                             resolution=args.resolution or 4 * 2 ** (stages - 1))
  try:
    validation.validate(config)
  except UsageError as e:
    sys.exit(str(e))
  measure = speed_meter(args.source, config, args.batch, args.gamma, args.warmup, args.threads)
  groups = ','.join(map(str, r3gan.stages(config)[2]))
  print(f'{"widths":<16} {"blocks":>6} {"groups":>10} {"res":>4} {"batch":>5} {"img/s":>9}')
  print(f'{args.widths:<16} {args.blocks:>6} {groups:>10} {config.resolution:>4} '
        f'{args.batch:>5} {measure(args.steps):>9.1f}', flush=True)


if __name__ == '__main__':
  main()
