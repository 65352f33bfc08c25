"""The real-vs-real floor of --mode=eval's metrics: other training images in place of G's.

  python benchmarks/eval_floor.py --flagfile=experiments/quickstart.flags

Scores N training images outside the evaluation's fixed subset against that subset, with the
same evaluator (features, settings, provenance) --mode=eval uses: what a generator that drew
real images would score. N is --eval_samples.
"""

import importlib
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from facegan_jax.run import runtime  # noqa: E402

runtime.configure()

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

importlib.import_module('main')  # defines the flags
from facegan_jax import config as config_lib  # noqa: E402
from facegan_jax.data import sources  # noqa: E402
from facegan_jax.evaluation import evaluate  # noqa: E402

FLAGS = flags.FLAGS


def floor(argv):
  del argv
  config = config_lib.from_flags(FLAGS)
  evaluator = evaluate.Evaluator(config)
  real = sources.load_images(config, 'train')
  others = np.setdiff1d(np.arange(len(real)), evaluator.subset)[:config.eval_samples]
  if len(others) < config.eval_samples:
    sys.exit(f'error: {config.dataset} has {len(others)} images outside the evaluation subset, '
             f'fewer than --eval_samples={config.eval_samples}')
  record = evaluator(0, lambda z: np.asarray(real[others]))
  print(re.sub(r'fakes \(\w+ G\)', 'other real images', evaluate.table(record), count=1))


if __name__ == '__main__':
  flags.FLAGS.set_default('workdir', '/nonexistent')  # not used
  app.run(floor)
