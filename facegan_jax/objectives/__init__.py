"""Objectives, chosen by --loss: each is D's loss, G's loss and their penalties in one module.

An objective module of this package defines:

- `d_loss(d, real, fake, config, *, d_step, example_keys) -> (loss, d, out)`: D's loss on
  this device's real and fake images (G's output, not differentiated), differentiated in D's
  parameters by the step. `d` is a `critic.Critic`: D as a function of images that threads
  its BatchNorm statistics, so it returns itself after each call. `out` holds `real_logits`,
  `fake_logits`, `d_loss` (the loss without penalties) and `metrics` ({name: value} of the
  penalties that are on, logged as they are named).
- `g_loss(d, real, fake, config) -> loss`: G's loss, differentiated in the fakes.
- `validate(config)`: raises errors.UsageError for settings the objective cannot take.

Losses are means over this device's examples; a penalty that needs the global batch takes
its mean over the `data` axis itself. Per-example randomness (`example_keys`, one key per
example from its global index) keeps a run the same on any number of devices.

Adding an objective is one module plus one line in OBJECTIVES. This file imports no JAX, so
that main.py's --help lists the objectives before JAX starts.
"""

import importlib

# --loss: {name: (module of this package, what it is)}.
OBJECTIVES = {
    'bce': ('classic', 'non-saturating cross-entropy (Goodfellow et al. 2014)'),
    'lsgan': ('classic', 'least squares (Mao et al. 2017)'),
    'hinge': ('classic', 'hinge (Lim & Ye 2017; Miyato et al. 2018)'),
    'wgan': ('classic', 'Wasserstein (Arjovsky et al. 2017), with --gp_weight or '
             '--spectral_norm to keep D Lipschitz'),
    'rpgan': ('rpgan', 'relativistic pairing with R1 and R2 on reals and fakes, R3GAN\'s '
              '(Huang et al. 2024); γ is --r1_gamma'),
}


def get(name):
  """The module of objective `name`."""
  return importlib.import_module(f'{__name__}.{OBJECTIVES[name][0]}')


def describe():
  """'name (what it is), ...' for --loss's help."""
  return ', '.join(f'{name} ({what})' for name, (_, what) in OBJECTIVES.items())
