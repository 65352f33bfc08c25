"""Trains a GAN or samples from one: `python main.py --flagfile=experiments/NAME.flags`.

This file is intentionally short: it turns flags into a Config and hands it to the library.
"""

import dataclasses
import logging as std_logging
import sys

from absl import app, flags, logging

from facegan_jax import config as config_lib
from facegan_jax import runtime

_DEFAULTS = config_lib.Config()
_HELP = dict(
    mode='train: train (resuming from the workdir\'s latest checkpoint); sample: write '
         'samples.npz and samples.png from the latest checkpoint; eval: metrics of the latest '
         'checkpoint into eval.json',
    dataset='synthetic_faces (embedded, no download), synthetic_faces/small (1,024 images, for '
            'smoke runs), celeba_small (the Udacity zip), tfds:NAME[:SPLIT] (a TFDS image '
            'dataset, e.g. tfds:celeb_a, tfds:mnist) or folder:PATH (a directory tree or .zip '
            'of jpg/png/webp/bmp images)',
    data_manual_dir='where downloaded archives are looked for first, e.g. '
                    'processed-celeba-small.zip (default: DATA_DIR/downloads/manual)',
    max_bad_fraction='largest fraction of unreadable image files that are skipped (counted and '
                     'reported) before preparing a dataset stops with an error',
    data_dir='where prepared datasets live (default: TFDS\'s default, ~/tensorflow_datasets)',
    input='where batches are drawn: device (the whole dataset on the devices), host (gathered '
          'on the host, a few steps ahead) or auto (device when the dataset takes at most half '
          'of the devices\' memory)',
    model='dcgan (convolutional) or mlp (fully connected, for 28x28 digits)',
    resolution='image height and width fed to the models',
    channels='3 (RGB) or 1 (grayscale)',
    batch_size='global batch size, split over all devices',
    num_steps='total training steps (one D and one G update each)',
    z_dim='latent size',
    conv_dim='base width: channels of D\'s first conv / G\'s last (dcgan), hidden units (mlp)',
    g_first_bn='BatchNorm after G\'s first projection (DCGAN paper: yes; Udacity: no)',
    d_dropout='dropout rate in the mlp discriminator',
    conv_impl='form of the stride-2 (transposed) convolutions: auto (the fastest measured '
              'on the backend), xla (XLA\'s own ops) or a form from models/layers.py',
    precision='fp32, or bf16: bfloat16 compute with float32 parameters, optimizer state, '
              'BatchNorm statistics and losses (for GPUs and TPUs; slow on CPUs)',
    loss='bce (non-saturating), lsgan or hinge',
    label_smoothing='target for real images in D\'s bce loss (one-sided; 1.0 = off)',
    lr_g='generator Adam learning rate',
    lr_d='discriminator Adam learning rate',
    beta1='Adam beta1 (DCGAN: 0.5)',
    beta2='Adam beta2',
    ema_decay='decay of the EMA generator used for samples (0 = off)',
    seed='seed of initialisation, data order and latents: a run is a function of its flags',
    num_devices='devices to use (0 = all devices of all processes)',
    coordinator_address='multi-process runs: host:port of process 0, with --num_processes and '
                        '--process_id (not needed under SLURM, Open MPI or on a Cloud TPU pod '
                        'slice, where JAX finds them itself)',
    num_processes='multi-process runs: how many processes (with --coordinator_address)',
    process_id='multi-process runs: this process\'s index, 0 to num_processes - 1',
    steps_per_call='training steps per compiled call at most (a loop in the call, batches drawn '
                   'on the devices; bit for bit the one-step run): calls also end at log, '
                   'sample, eval and checkpoint steps and span at most an epoch. Amortises '
                   'dispatch for small models on accelerators',
    log_every='steps between metrics.jsonl lines and progress logs',
    sample_every='steps between sample grids in workdir/samples/',
    checkpoint_every='steps between checkpoints',
    keep_checkpoints='checkpoints to keep (older ones are deleted once a newer one is saved)',
    init_checkpoint='when the workdir has no checkpoint: start from the weights (G, D, '
                    'BatchNorm statistics, EMA) of this run\'s workdir, its checkpoints/ or one '
                    'checkpoints/STEP; optimizers and step start afresh',
    num_samples='--mode=sample: how many images to write',
    eval_samples='--mode=eval and --eval_every: how many generated and how many real images to '
                 'compare',
    inception_weights='--mode=eval: pytorch-fid\'s pt_inception-2015-12-05-6726825d.pth (or an '
                      '.npz of its arrays) for FID, KID and precision/recall; read without '
                      'running pickle code',
    fid_resize='--mode=eval: how images reach 299x299 for Inception: pytorch_fid (bilinear, '
               'its default) or clean_fid (PIL bicubic)',
    eval_every='steps between evaluations during training (0 = off): the --mode=eval metrics '
               'of the current generator, appended to metrics.jsonl with their provenance',
    best_metric='with --eval_every: also keep the checkpoint with the lowest value of this '
                'metric in workdir/best_checkpoint (swd, domain_fd, attr_w1, attr_tv for '
                'synthetic_faces; fid, kid with --inception_weights)',
    sample_seed='seed of the latents of samples (training grids and --mode=sample)',
)
_DEFINE = {bool: flags.DEFINE_bool, int: flags.DEFINE_integer, float: flags.DEFINE_float,
           str: flags.DEFINE_string}
for _field in dataclasses.fields(config_lib.Config):
  _type = str if _field.type == str | None else _field.type
  _DEFINE[_type](_field.name, getattr(_DEFAULTS, _field.name), _HELP[_field.name])
flags.DEFINE_string('workdir', None, 'directory for checkpoints, samples, metrics and plots')
flags.mark_flag_as_required('workdir')
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  config = config_lib.Config(**{f.name: FLAGS[f.name].value
                                for f in dataclasses.fields(config_lib.Config)})
  handler = logging.get_absl_handler()
  handler.python_handler.stream = sys.stdout
  # Libraries (orbax, TFDS, JAX) log a lot at INFO; keep their warnings and errors only.
  handler.addFilter(lambda r: r.levelno >= std_logging.WARNING
                    or '/facegan_jax/' in r.pathname)
  try:
    config_lib.validate(config)
  except config_lib.UsageError as e:
    sys.exit(f'error: {e}')
  # JAX is imported only now: --help and flag errors do not wait for it, and the CPU runtime
  # settings (facegan_jax/runtime.py) are in place before it starts.
  runtime.configure()
  runtime.initialize_distributed(config)
  from facegan_jax import checkpoint, sample, train
  from facegan_jax.evaluation import evaluate
  try:
    if config.mode == 'train':
      train.train_and_evaluate(config, FLAGS.workdir)
    elif config.mode == 'sample':
      sample.sample(config, FLAGS.workdir)
    else:
      evaluate.evaluate(config, FLAGS.workdir)
  except (config_lib.UsageError, FloatingPointError, checkpoint.CheckpointError) as e:
    sys.exit(f'error: {e}')
  except OSError as e:
    if e.errno not in checkpoint.DISK_FULL:
      raise
    where = e.filename or FLAGS.workdir
    sys.exit(f'error: writing {where} failed: {checkpoint.DISK_FULL[e.errno]}; with space '
             'again, rerun the command to resume from the last checkpoint')


if __name__ == '__main__':
  app.run(main)
