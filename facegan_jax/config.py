"""The run's configuration: one plain value built from flags, validated before compiling.

JAX-free, so that main.py's --help answers at once: the choices come from the registries of
models/, objectives/, augment/ and evaluation/, whose package files import no JAX. Its checks
(`validate`) live in validation.py: they ask the chosen family and objective to check their
own settings, which imports them (and JAX), so main.py calls them after runtime.configure().
"""

import dataclasses
import os

from facegan_jax import augment, evaluation, models, objectives
from facegan_jax.errors import UsageError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# How --lr_decay and --schedule's values change (schedules.py computes them).
SCHEDULE_KINDS = ('linear', 'cosine')
# The values --schedule can move over the run (schedules.py), each with the bound its final
# value must stay below; all end at 0 or above, and a value that starts at 0 is off, but for
# those that R3GAN's presets raise from 0 (RISE_FROM_ZERO).
SCHEDULED = dict(lr_g=float('inf'), lr_d=float('inf'), beta2=1.0, beta2_d=1.0,
                 r1_gamma=float('inf'), gp_weight=float('inf'), ema_decay=1.0,
                 ema_kimg=float('inf'), augment_p=1.0)
RISE_FROM_ZERO = ('ema_kimg', 'augment_p')


def field(default, help, derived=False):  # noqa: A002  (the flag's help, as absl calls it)
  """A Config field; a `derived` one is no flag: the run sets it from the data."""
  return dataclasses.field(default=default, metadata=dict(help=help, derived=derived))


def flag_fields():
  """The Config fields that are flags (all but the derived ones)."""
  return [f for f in dataclasses.fields(Config) if not f.metadata['derived']]


@dataclasses.dataclass(frozen=True)
class Config:
  """Everything a run depends on; main.py's flags map one to one onto these fields, and
  their help is each field's `help` (`python main.py --helpfull`)."""
  mode: str = field('train', "train: train (resuming from the workdir's latest checkpoint); "
      'sample: write samples.npz and samples.png from the latest checkpoint; eval: metrics of the '
      'latest checkpoint into eval.json; explore: latent-space figures into workdir/explore/; '
      'project: the latents of real images (--project_images) into workdir/project/')
  dataset: str = field('synthetic_faces', 'synthetic_faces (embedded, no download), '
      'synthetic_faces/small (1,024 images, for smoke runs), celeba_small (the Udacity zip), '
      'tfds:NAME[:SPLIT] (a TFDS image dataset, e.g. tfds:celeb_a, tfds:mnist) or folder:PATH (a '
      'directory tree or .zip of jpg/png/webp/bmp images)')
  data_dir: str | None = field(None, "where prepared datasets live (default: TFDS's default, "
      '~/tensorflow_datasets)')
  data_manual_dir: str | None = field(None, 'where downloaded archives are looked for first, e.g. '
      'processed-celeba-small.zip (default: DATA_DIR/downloads/manual)')
  max_images: int = field(0, 'train on N images of the dataset (0 = all), the same N for every '
      'run: small-data runs on any dataset. Metrics compare with these N, their floor with as '
      'many of the rest')
  max_bad_fraction: float = field(0.01, 'largest fraction of unreadable image files that are '
      'skipped (counted and reported) before preparing a dataset stops with an error')
  data_may_change: bool = field(False, 'resume even though the training images differ from '
      'those the checkpoint was trained on (a folder with images added, removed or changed)')
  condition: str = field('', "class-conditional G and D (models/conditioning.py): '' (off), "
      "label (the dataset's classes: a folder's class subfolders, a TFDS label feature) or a "
      "synthetic_faces attribute, hair_style or glasses; samples, grids and metrics then take "
      'the classes')
  num_classes: int = field(0, 'the classes of --condition, from the data (not a flag)',
                           derived=True)
  input: str = field('auto', 'where batches are drawn: device (the whole dataset on the devices), '
      'host (gathered on the host, a few steps ahead) or auto (device when the dataset takes at '
      "most half of the devices' memory)")
  model: str = field('dcgan', f'the family of G and D: {models.describe()}')
  resolution: int = field(32, 'image height and width fed to the models')
  channels: int = field(3, '3 (RGB) or 1 (grayscale)')
  batch_size: int = field(64, 'global batch size, split over all devices')
  num_steps: int = field(2000, 'total training steps (--d_steps D updates and one G update '
      'each)')
  z_dim: int = field(100, 'latent size')
  conv_dim: int = field(32, "dcgan's base width: channels of D's first conv and G's last")
  widths: str = field('128,128,128,64', "r3gan's stage widths of G from 4x4 up, comma-separated "
      '(D mirrors them), for 4 * 2^(count - 1) pixels; at a larger --resolution each extra '
      'stage halves the last width (R3GAN\'s presets), at a smaller one the list is cut')
  blocks: str = field('1', "r3gan's residual blocks per stage: one number, or one per stage")
  groups: str = field('', "r3gan's groups of each block's 3x3 convolution: one number, or one "
      'per stage; empty: 16 channels a group, as the paper\'s presets')
  hidden_dim: int = field(128, "mlp's width: units of G's first and D's last hidden layer (the "
      'others 2x and 4x)')
  g_first_bn: bool = field(False, "BatchNorm after G's first projection (DCGAN paper: yes; "
      'Udacity: no)')
  d_dropout: float = field(0.3, 'dropout rate in the mlp discriminator')
  conv_impl: str = field('auto', 'forms of the convolutions (facegan_jax/ops/): auto (the fastest '
      "measured on the backend) or xla (XLA's own ops everywhere, the reference)")
  precision: str = field('fp32', 'fp32, or bf16: bfloat16 compute with float32 parameters, '
      'optimizer state, BatchNorm statistics and losses (for GPUs and TPUs; slow on CPUs)')
  loss: str = field('bce', f"the objective, D's and G's losses with their penalties: "
      f'{objectives.describe()}')
  gp_weight: float = field(0.0, "WGAN-GP's gradient penalty weight (Gulrajani et al. 2017: 10) "
      "on D's gradient at random interpolates of reals and fakes; needs --loss=wgan; 0 = off")
  label_smoothing: float = field(1.0, "target for real images in D's bce loss (one-sided; 1.0 = "
      'off)')
  lr_g: float = field(2e-4, 'generator Adam learning rate')
  lr_d: float = field(2e-4, 'discriminator Adam learning rate')
  lr_decay: str = field('none', 'none, linear or cosine: both learning rates constant until '
      'the decay starts (--lr_decay_steps before the end, or --lr_decay_start), then to 0 at '
      '--num_steps, linearly (SNGAN, Mimicry) or along a half cosine')
  lr_decay_steps: int | None = field(None, 'with --lr_decay: decay over the last this many '
      'steps, or the whole run when it is shorter (so --num_steps alone changes the length)')
  lr_decay_start: int = field(0, 'with --lr_decay: the step the decay starts at, when above 0 '
      '(it then places the decay, not --lr_decay_steps)')
  beta1: float = field(0.5, 'Adam beta1 (DCGAN: 0.5)')
  beta2: float = field(0.999, 'Adam beta2')
  beta1_d: float | None = field(None, "D's Adam beta1 (default: --beta1; SNGAN's recipe: 0)")
  beta2_d: float | None = field(None, "D's Adam beta2 (default: --beta2; SNGAN's recipe: 0.9)")
  r1_gamma: float = field(0.0, "R1 penalty's weight on D's gradient at the reals, "
      'gamma/2 E|grad_x D(x)|^2 (Mescheder et al. 2018; 0 = off)')
  r1_every: int = field(1, 'with --r1_gamma: apply R1 every k D steps, scaled by k (lazy '
      'regularisation, as StyleGAN2 with k=16)')
  spectral_norm: str = field('none', 'spectral normalisation of the weights (Miyato et al. '
      "2018; one power iteration per step): none, d (D's) or gd (both networks'). DCGAN's D "
      'then has no BatchNorm, as SN-DCGAN')
  augment: str = field('none', 'augmentation of every image D sees, real and fake, '
      'differentiable: none, diffaug (DiffAugment, Zhao et al. 2020) or ada (the bgc pipeline '
      'with adaptive probability p, Karras et al. 2020)')
  diffaug_policy: str = field('color,translation,cutout', 'with --augment=diffaug: the '
      'transforms, comma-separated, from color, translation and cutout')
  ada_pipeline: str = field('bgc', "with --augment=ada: StyleGAN2-ADA's pipeline (--augpipe): "
      'blit (flips, 90° rotations, integer translation: lossless), geom (scaling, rotation, '
      'fractional translation: resampled), color, or the sums bg and bgc')
  ada_target: float = field(0.6, "with --augment=ada: the target of r_t = E[sign(D(real))]; p "
      'rises while r_t is above it')
  ada_kimg: float = field(500.0, 'with --augment=ada: thousands of real images over which p can '
      "move from 0 to 1 (StyleGAN2-ADA's 500 suits its long runs; short runs want ~10-50)")
  augment_p: float | None = field(None, 'with --augment=ada: the probability p of each '
      "transform, set instead of adapted (R3GAN's presets raise it from 0 by --schedule, e.g. "
      '--augment_p=0 --schedule=augment_p:cosine:0.55); empty: ADA adapts it')
  mbstd_group: int = field(0, "dcgan's D: the group size of a minibatch standard deviation "
                           'channel before its logit (Karras et al. 2018: 4; 0 = off)')
  d_steps: int = field(1, "D updates per G update (SNGAN's n_dis: 5), each on its own real "
      'batch; a step then reads d_steps batches')
  ema_decay: float = field(0.0, 'decay of the EMA generator used for samples and evaluation '
      '(0 = off); at step t the decay is min(ema_decay, (1 + t) / (10 + t)), as TF\'s '
      'ExponentialMovingAverage warms up, so 0.998 is reached at step 4,490 and 0.999 at 8,990')
  ema_kimg: float = field(0.0, "the EMA generator's half-life in thousands of images, instead "
      "of --ema_decay (StyleGAN2's and R3GAN's form: decay 0.5^(batch / (1000 ema_kimg))); "
      "R3GAN's presets raise it from 0 by --schedule, e.g. ema_kimg:cosine:500")
  seed: int = field(0, 'seed of initialisation, data order and latents: a run is a function of '
      'its flags')
  num_devices: int = field(0, 'devices to use (0 = all devices of all processes)')
  coordinator_address: str | None = field(None, 'multi-process runs: host:port of process 0, with '
      '--num_processes and --process_id (not needed under SLURM, Open MPI or on a Cloud TPU pod '
      'slice, where JAX finds them itself)')
  num_processes: int = field(1, 'multi-process runs: how many processes (with '
      '--coordinator_address)')
  process_id: int = field(0, "multi-process runs: this process's index, 0 to num_processes - 1")
  steps_per_call: int = field(1, 'training steps per compiled call at most (a loop in the call, '
      'batches drawn on the devices; bit for bit the one-step run): calls also end at log, '
      'sample, eval and checkpoint steps and span at most an epoch. Amortises dispatch for small '
      'models on accelerators')
  log_every: int = field(50, 'steps between metrics.jsonl lines and progress logs')
  sample_every: int = field(500, 'steps between sample grids in workdir/samples/')
  checkpoint_every: int = field(500, 'steps between checkpoints')
  keep_checkpoints: int = field(3, 'checkpoints to keep (older ones are deleted once a newer one '
      'is saved)')
  init_checkpoint: str | None = field(None, 'when the workdir has no checkpoint: start from the '
      "weights (G, D, BatchNorm statistics, EMA) of this run's workdir, its checkpoints/ or one "
      'checkpoints/STEP; optimizers and step start afresh')
  num_samples: int = field(64, '--mode=sample: how many images to write')
  sample_class: int = field(-1, '--mode=sample and explore under --condition: the class to '
      "draw, by its place among the classes (a folder's sorted subfolder names, a TFDS label's "
      "names, an attribute's categories); -1: every class in turn, a row of the grid each")
  eval_samples: int = field(2048, '--mode=eval and --eval_every: how many generated and how many '
      'real images to compare')
  inception_weights: str | None = field(None, "--mode=eval: pytorch-fid's "
      'pt_inception-2015-12-05-6726825d.pth (or an .npz of its arrays) for FID, KID and '
      "precision/recall (--mode=project: the perceptual distance's features); read without "
      'running pickle code')
  fid_resize: str = field('pytorch_fid', '--mode=eval: how images reach 299x299 for Inception: '
      'pytorch_fid (bilinear, its default) or clean_fid (PIL bicubic)')
  eval_every: int = field(0, 'steps between evaluations during training (0 = off): the '
      '--mode=eval metrics of the current generator, appended to metrics.jsonl with their '
      'provenance')
  best_metric: str = field('', 'with --eval_every: also keep the checkpoint with the lowest value '
      'of this metric in workdir/best_checkpoint (swd, domain_fd, attr_w1, attr_tv for '
      'synthetic_faces; class_fd, class_tv for labelled datasets, and class_coverage, the '
      'one kept highest; class_accuracy, cas (kept highest) and intra_fd with --condition; fid, '
      'kid with --inception_weights)')
  interpolate: int = field(8, '--mode=explore: frames per row of the latent interpolation '
                           'figure')
  project_images: str | None = field(None, '--mode=project: a folder or .zip of images to '
      'project into the latent space (default: --project_split of the training dataset)')
  project_split: str = field('test', '--mode=project without --project_images: the split of '
      '--dataset whose first --project_count images are projected')
  project_count: int = field(16, '--mode=project: how many images to project')
  project_steps: int = field(500, '--mode=project: Adam steps on the latents')
  project_lr: float = field(0.05, "--mode=project: Adam's learning rate, decayed to 0 on a "
      'cosine over the steps')
  project_starts: int = field(16, '--mode=project: random latents tried per image; the one '
      'whose image is nearest starts the optimisation')
  project_perceptual: float = field(1.0, '--mode=project: weight of the perceptual distance '
      "(in the features of synthetic_faces' attribute network or a labelled dataset's class "
      'network) beside the pixel distance; 0 for pixels only')
  tensorboard: bool = field(True, 'write TensorBoard event files to workdir/tensorboard/ '
                            '(`tensorboard --logdir workdirs/`)')
  sample_seed: int = field(0, 'seed of the latents of samples (training grids and --mode=sample)')
  schedule: str = field('', 'values that change over the run: comma-separated '
      "NAME:KIND:FINAL[:STEPS], each from its flag's value at step 0 to FINAL at --num_steps "
      '(or at step STEPS, then FINAL), KIND linear or cosine, e.g. '
      f'beta2_d:cosine:0.99,r1_gamma:cosine:0.2:50000; NAME one of {", ".join(SCHEDULED)}')

  def to_flags(self):
    """The config as flagfile lines, e.g. `--batch_size=64`."""
    return ''.join(flag(f.name, getattr(self, f.name)) + '\n' for f in flag_fields()
                   if getattr(self, f.name) is not None)


def flag(name, value):
  """`--name=value` as a flagfile line has it (booleans as true/false, None as empty)."""
  text = '' if value is None else str(value).lower() if isinstance(value, bool) else value
  return f'--{name}={text}'


# The flags a resumed run may change, applied from the step it resumes at (and recorded in
# flags.txt): where the data and devices are and how steps are grouped (the run computes the
# same), how long it runs, how often it logs, samples, checkpoints and evaluates, and the
# learning rates. Every other flag fixes what the run computes: a resume with another value is
# an error (checkpoint/manager.py).
RESUME_MAY_CHANGE = ('mode', 'data_dir', 'data_manual_dir', 'max_bad_fraction',
                     'data_may_change', 'input',
                     'conv_impl', 'num_devices', 'coordinator_address', 'num_processes',
                     'process_id', 'steps_per_call', 'num_steps', 'log_every', 'sample_every',
                     'checkpoint_every', 'keep_checkpoints', 'num_samples', 'sample_class',
                     'sample_seed',
                     'eval_every', 'inception_weights', 'lr_g', 'lr_d', 'lr_decay_start',
                     'lr_decay_steps', 'tensorboard', 'interpolate', 'project_images',
                     'project_split', 'project_count', 'project_steps', 'project_lr',
                     'project_starts', 'project_perceptual')


def fixed_on_resume():
  """The Config fields a resume must keep (all but RESUME_MAY_CHANGE)."""
  return tuple(f.name for f in dataclasses.fields(Config) if f.name not in RESUME_MAY_CHANGE)


def changed_on_resume(saved, config):
  """{name: (saved value, this run's)} of the RESUME_MAY_CHANGE flags that differ from the
  checkpoint's config `saved` (a dict; fields it lacks are not compared), per-process ones
  aside."""
  return {name: (saved[name], getattr(config, name)) for name in RESUME_MAY_CHANGE
          if name not in ('mode', 'process_id') and name in saved
          and saved[name] != getattr(config, name)}


# The metrics of a labelled dataset's class net (evaluation/classifier.py).
CLASS_NET_METRICS = ('class_fd', 'class_tv', 'class_coverage')

# --conv_impl: the fastest forms on the backend, or XLA's own ops (facegan_jax/ops/).
CONV_IMPLS = ('auto', 'xla')


def choices():
  """{flag: its choices}, the registries' as they are now (a family or an objective added
  to its registry is a choice at once)."""
  return dict(mode=('train', 'sample', 'eval', 'explore', 'project'), input=('auto', 'device', 'host'),
              precision=tuple(models.PRECISIONS), model=tuple(models.FAMILIES),
              lr_decay=('none',) + SCHEDULE_KINDS, loss=tuple(objectives.OBJECTIVES),
              spectral_norm=('none', 'd', 'gd'), augment=augment.AUGMENTS,
              ada_pipeline=tuple(augment.ADA_PIPELINES), fid_resize=evaluation.RESIZE_MODES,
              # Lower is better for each but class_coverage (evaluation/periodic.py).
              best_metric=('', 'swd', 'domain_fd', 'attr_w1', 'attr_tv', 'class_fd',
                           'class_tv', 'class_coverage', 'class_accuracy', 'intra_fd', 'cas',
                           'fid', 'kid'),
              conv_impl=CONV_IMPLS)


def flag_type(field_type):
  """The type of a Config field's flag: `float` for `float | None`, and so on."""
  return next(t for t in getattr(field_type, '__args__', (field_type,)) if t is not type(None))


def from_flags(flag_values):
  """The Config of parsed absl flags (main.py's, which define one flag per field)."""
  return Config(**{f.name: flag_values[f.name].value for f in flag_fields()})


def read_flagfile(path):
  """{field: value} of the `--name=value` lines of a flagfile that name Config fields."""
  types = {f.name: f.type for f in flag_fields()}
  values = {}
  with open(path) as f:
    for line in f:
      name, _, value = line.strip().removeprefix('--').partition('=')
      if line.startswith('--') and name in types:
        kind = flag_type(types[name])
        if value == '' and kind is not str:  # an optional flag set back to its default
          values[name] = None
        else:
          values[name] = value.lower() == 'true' if kind is bool else kind(value)
  return values


def is_synthetic_faces(dataset):
  """Whether --dataset is the embedded synthetic_faces (full or small): the one dataset with
  attribute metrics."""
  return dataset.split('/')[0] == 'synthetic_faces'


def parse_schedule(text):
  """{name: (kind, final, end step or None for --num_steps)} of a --schedule value;
  UsageError for a malformed one."""
  parsed = {}
  for item in filter(None, text.split(',')):
    name, kind, final, end = (item.split(':') + ['', '', ''])[:4]
    if (name not in SCHEDULED or kind not in SCHEDULE_KINDS or name in parsed
        or item.count(':') > 3):
      raise UsageError(f'--schedule={text}: each item is NAME:KIND:FINAL[:STEPS] with NAME one '
                       f'of {", ".join(SCHEDULED)} (each once) and KIND one of '
                       f'{", ".join(SCHEDULE_KINDS)}')
    try:
      final = float(final)
    except ValueError:
      raise UsageError(f'--schedule={text}: {item} has no number for its final value') from None
    if end and not (end.isdigit() and int(end) > 0):
      raise UsageError(f'--schedule={text}: {item} ends at step {end}, not a positive integer')
    parsed[name] = (kind, final, int(end) if end else None)
  return parsed
