"""Trains a GAN or samples from one: `python main.py --flagfile=experiments/NAME.flags`.

This file is intentionally short: it turns flags into a Config and hands it to the library.
Every flag is a Config field, with its help beside it (facegan_jax/config.py).
"""

import sys

from absl import app, flags, logging

from facegan_jax import config as config_lib
from facegan_jax import validation
from facegan_jax.errors import DISK_FULL, NOT_WRITABLE, CheckpointError, UsageError
from facegan_jax.run import runtime
from facegan_jax.run import workdir as workdir_lib

_DEFINE = {bool: flags.DEFINE_bool, int: flags.DEFINE_integer, float: flags.DEFINE_float,
           str: flags.DEFINE_string}
for _field in config_lib.flag_fields():
  _DEFINE[config_lib.flag_type(_field.type)](
      _field.name, _field.default, _field.metadata['help'])
flags.DEFINE_string('workdir', None, 'directory for checkpoints, samples, metrics and plots')
flags.mark_flag_as_required('workdir')
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  if '--flagfile=' in sys.argv[1:]:  # absl skips it: the run would go on without its flags
    sys.exit('error: --flagfile is empty (an unset shell variable?); name a flagfile')
  config = config_lib.from_flags(FLAGS)
  handler = logging.get_absl_handler()
  handler.python_handler.stream = sys.stdout
  handler.addFilter(runtime.ours_or_warning)
  # JAX is imported only now, with the CPU runtime settings (facegan_jax/run/runtime.py) in
  # place: --help does not wait for it. The family and objective validate their own settings,
  # which imports them.
  runtime.configure()
  try:
    validation.validate(config)
    workdir_lib.check(FLAGS.workdir)
  except UsageError as e:
    sys.exit(f'error: {e}')
  runtime.initialize_distributed(config)
  from facegan_jax import explore, project, sample, train  # noqa: PLC0415
  from facegan_jax.data import images, sources  # noqa: PLC0415
  from facegan_jax.evaluation import evaluate  # noqa: PLC0415
  try:
    # A folder dataset is listed once for the whole run (images.listed_once).
    with images.listed_once():
      config = sources.with_classes(config)  # the data's classes under --condition
      validation.validate(config)
      if config.mode == 'train':
        train.train_and_evaluate(config, FLAGS.workdir)
      elif config.mode == 'sample':
        sample.sample(config, FLAGS.workdir)
      elif config.mode == 'explore':
        explore.explore(config, FLAGS.workdir)
      elif config.mode == 'project':
        project.project(config, FLAGS.workdir)
      else:
        evaluate.evaluate(config, FLAGS.workdir)
  except (UsageError, FloatingPointError, CheckpointError) as e:
    sys.exit(f'error: {e}')
  except OSError as e:
    where = e.filename or FLAGS.workdir
    if e.errno in NOT_WRITABLE:
      sys.exit(f'error: cannot write {where}: {e.strerror}')
    if e.errno not in DISK_FULL:
      raise
    sys.exit(f'error: writing {where} failed: {DISK_FULL[e.errno]}; with space again, rerun '
             'the command to resume from the last checkpoint')


if __name__ == '__main__':
  app.run(main)
