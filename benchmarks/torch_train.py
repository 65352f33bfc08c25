"""The PyTorch reference models trained with a flagfile's recipe, scored by our evaluator.

  python benchmarks/torch_train.py --flagfile=experiments/sn_dcgan_quickstart.flags \
      [--model=resnet --conv_dim=16 ...] [--eval_every=500]

Whether our models learn as the textbook ones do: benchmarks/torch_reference.py's DCGAN
(BatchNorm D) or SNGAN ResNet (spectral norm on D, PyTorch's parametrisation) trained in
PyTorch eager on the same images (sources.load_images: the same decoding and resizing), with
the same recipe read from main.py's flags: loss (bce with --label_smoothing, or hinge),
--d_steps, Adam per network with --lr_decay, the EMA generator with TF's warm-up, batch size
and length. Then the EMA generator (BatchNorm from its running statistics, as ours samples)
is scored by evaluate.Evaluator on the same reals and the same latents as `--mode=eval`, and
the sample grid of the fixed latents of our training grids is written to --out.
Initialisation, data order and latents are PyTorch's own (seed --seed): compare the curves,
not single numbers.
"""

import copy
import importlib
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from facegan_jax.run import runtime  # noqa: E402

runtime.configure()  # main.py's CPU settings, before JAX starts (PyTorch shares the allocator)

import jax  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from absl import app, flags, logging  # noqa: E402

importlib.import_module('main')  # defines the flags: a flagfile's --workdir is read, not used
from benchmarks import torch_reference  # noqa: E402
from facegan_jax import config as config_lib, state as state_lib  # noqa: E402
from facegan_jax.data import pipeline, sources  # noqa: E402
from facegan_jax.evaluation import evaluate  # noqa: E402
from facegan_jax.logs import visualize  # noqa: E402

flags.DEFINE_string('out', '/tmp/torch_train', 'where the grids and eval records go')
FLAGS = flags.FLAGS


def check(config):
  """The recipes the PyTorch reference has: one-line errors for the rest."""
  if config.model == 'resnet' and config.spectral_norm != 'd':
    sys.exit('error: the PyTorch ResNet has spectral norm on D: --spectral_norm=d')
  if config.model == 'dcgan' and config.spectral_norm != 'none':
    sys.exit('error: the PyTorch DCGAN has a BatchNorm D: --spectral_norm=none')
  if config.model not in ('dcgan', 'resnet') or config.loss not in ('bce', 'hinge'):
    sys.exit(f'error: --model={config.model} --loss={config.loss}: the reference trains dcgan '
             'or resnet with bce or hinge')
  if config.r1_gamma or config.gp_weight or config.augment != 'none' or config.mbstd_group:
    sys.exit('error: the reference has no R1, gradient penalty, augmentation or mbstd')


def d_loss_fn(config, real_logits, fake_logits):
  if config.loss == 'hinge':
    return torch.relu(1 - real_logits).mean() + torch.relu(1 + fake_logits).mean()
  bce = torch.nn.functional.binary_cross_entropy_with_logits
  return (bce(real_logits, torch.full_like(real_logits, config.label_smoothing))
          + bce(fake_logits, torch.zeros_like(fake_logits)))


def g_loss_fn(config, fake_logits):
  if config.loss == 'hinge':
    return -fake_logits.mean()
  return torch.nn.functional.binary_cross_entropy_with_logits(fake_logits,
                                                              torch.ones_like(fake_logits))


def adam(config, params, lr, network):
  """(torch Adam, its LambdaLR or None) with state.Adam's betas and linear decay bounds."""
  settings = state_lib.Adam.of(config, network)
  assert settings.lr.start == lr and settings.beta2.constant, 'a constant beta2 only'
  optimizer = torch.optim.Adam(params, lr=lr, betas=(settings.beta1, settings.beta2.start))
  if settings.lr.constant:
    return optimizer, None
  assert settings.lr.kind == 'linear', 'the linear decay only'
  start, end = settings.lr.begin, settings.lr.end
  schedule = torch.optim.lr_scheduler.LambdaLR(
      optimizer, lambda t: 1.0 if t < start else max(0.0, (end - t) / (end - start)))
  return optimizer, schedule


def main(argv):
  del argv
  config = config_lib.from_flags(FLAGS)
  check(config)
  logging.get_absl_handler().addFilter(runtime.ours_or_warning)  # as main.py: no library INFO
  os.makedirs(FLAGS.out, exist_ok=True)
  torch.manual_seed(config.seed)
  torch.set_num_threads(os.cpu_count())
  arch = dict(model=config.model, resolution=config.resolution, conv_dim=config.conv_dim,
              z_dim=config.z_dim, channels=config.channels, g_first_bn=config.g_first_bn)
  g, d = _build(arch)
  ema = copy.deepcopy(g) if config.ema_decay else g
  opt_g, sched_g = adam(config, g.parameters(), config.lr_g, 'g')
  opt_d, sched_d = adam(config, d.parameters(), config.lr_d, 'd')
  images = torch.from_numpy(np.asarray(pipeline.to_float(sources.load_images(config, 'train'))))
  images = images.permute(0, 3, 1, 2).contiguous()
  evaluator = evaluate.Evaluator(config) if config.eval_every else None
  grid_z = torch.from_numpy(np.array(jax.device_get(jax.random.normal(
      jax.random.PRNGKey(config.sample_seed), (64, config.z_dim)))))
  order, position = torch.randperm(len(images)), 0
  started, n = time.perf_counter(), config.batch_size

  def next_batch():
    nonlocal order, position
    if position + n > len(order):
      order, position = torch.randperm(len(images)), 0
    position += n
    return images[order[position - n:position]]

  def generate(z):  # jax latents -> uint8 NHWC, the EMA G with its running statistics
    ema.eval()
    with torch.no_grad():
      out = ema(torch.from_numpy(np.array(jax.device_get(z)))).permute(0, 2, 3, 1).numpy()
    ema.train()
    return pipeline.to_uint8(out)

  for step in range(1, config.num_steps + 1):
    for _ in range(config.d_steps):
      with torch.no_grad():
        fake = g(torch.randn(n, config.z_dim))
      opt_d.zero_grad()
      d_loss = d_loss_fn(config, d(next_batch()), d(fake))
      d_loss.backward()
      opt_d.step()
      if sched_d:
        sched_d.step()
    opt_g.zero_grad()
    g_loss = g_loss_fn(config, d(g(torch.randn(n, config.z_dim))))
    g_loss.backward()
    opt_g.step()
    if sched_g:
      sched_g.step()
    if config.ema_decay:  # TF's warm-up, as step.py's
      decay = min(config.ema_decay, (1.0 + step - 1) / (10.0 + step - 1))
      with torch.no_grad():
        for e, p in zip(ema.parameters(), g.parameters()):
          e.lerp_(p, 1 - decay)
        for e, b in zip(ema.buffers(), g.buffers()):
          e.copy_(b)
    if step % config.log_every == 0:
      seconds = time.perf_counter() - started
      print(f'step {step}/{config.num_steps} | d_loss {d_loss.item():.3f} g_loss '
            f'{g_loss.item():.3f} | {step * n * config.d_steps / seconds:.0f} img/s', flush=True)
    if config.eval_every and (step % config.eval_every == 0 or step == config.num_steps):
      record = evaluator(step, generate)
      values = {k: round(v['value'], 3) for k, v in record['metrics'].items()}
      print(f'eval at step {step} ({time.perf_counter() - started:.0f} s): {values}', flush=True)
      visualize.save_grid(generate(grid_z), os.path.join(FLAGS.out, f'step_{step:07d}.png'))
      started += record['seconds']['total']  # img/s of training alone


def _build(arch):
  arch = dict(arch)
  if arch.pop('model') == 'resnet':
    return (torch_reference.ResNetGenerator(**arch), torch_reference.ResNetDiscriminator(**arch))
  g, d = (torch_reference.DCGenerator(**arch), torch_reference.DCDiscriminator(**arch))
  return g.apply(torch_reference._init), d.apply(torch_reference._init)


if __name__ == '__main__':
  app.run(main)
