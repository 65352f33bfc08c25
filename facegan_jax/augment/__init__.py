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

AUGMENTS = ('none', 'diffaug', 'ada')

# --diffaug_policy's transforms (diffaug.py implements each), in the order they apply.
DIFFAUG_POLICIES = ('color', 'translation', 'cutout')

# --ada_pipeline's groups of transforms (StyleGAN2-ADA's --augpipe names): blit, geometric
# and colour.
ADA_PIPELINES = dict(blit='b', geom='g', color='c', bg='bg', bgc='bgc')
