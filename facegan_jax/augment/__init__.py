"""Differentiable augmentations of every image D sees, real and fake (--augment).

Both keep D from memorising a small training set while G still learns through them: each is a
differentiable function of the images, so G's gradient passes through the same augmentation
D's input had.

- `diffaug` (diffaug.py): DiffAugment (Zhao et al. 2020), color, translation and cutout on
  every image.
- `ada` (ada.py): ADA (Karras et al. 2020), the `bgc` pipeline or part of it
  (--ada_pipeline), each transform applied with probability p, which is adapted during
  training from how often D's real logits are positive.

Randomness comes from one key per example (from its global index), so the augmented batch
does not depend on the number of devices. Images are NHWC in [-1, 1]. This file imports no
JAX: its names are --augment's, --diffaug_policy's and --ada_pipeline's choices.
"""

from facegan_jax.errors import UsageError

AUGMENTS = ('none', 'diffaug', 'ada')

# --diffaug_policy's transforms (diffaug.py implements each), in the order they apply.
DIFFAUG_POLICIES = ('color', 'translation', 'cutout')

# --ada_pipeline's groups of transforms (StyleGAN2-ADA's --augpipe names): blit, geometric
# and colour.
ADA_PIPELINES = dict(blit='b', geom='g', color='c', bg='bg', bgc='bgc')


def validate(config, defaults):
  """UsageError for the first bad augmentation flag (`defaults`: a Config of the defaults,
  to tell the flags given from the others)."""
  policy = config.diffaug_policy.split(',')
  if any(p not in DIFFAUG_POLICIES for p in policy) or len(set(policy)) != len(policy):
    raise UsageError(f'--diffaug_policy={config.diffaug_policy}: must list some of '
                     f'{",".join(DIFFAUG_POLICIES)}, each once')
  if config.diffaug_policy != defaults.diffaug_policy and config.augment != 'diffaug':
    raise UsageError('--diffaug_policy needs --augment=diffaug')
  if config.ada_pipeline != defaults.ada_pipeline and config.augment != 'ada':
    raise UsageError('--ada_pipeline needs --augment=ada')
  if not 0 < config.ada_target < 1:
    raise UsageError(f'--ada_target={config.ada_target}: must be in (0, 1)')
  if not config.ada_kimg > 0:
    raise UsageError(f'--ada_kimg={config.ada_kimg}: must be positive')
  if config.augment_p is not None:
    if config.augment != 'ada':
      raise UsageError(f'--augment_p={config.augment_p} needs --augment=ada')
    if not 0 <= config.augment_p <= 1:
      raise UsageError(f'--augment_p={config.augment_p}: must be in [0, 1]')
