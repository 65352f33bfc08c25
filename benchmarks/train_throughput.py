"""Training throughput per preset and batch size, beside a PyTorch eager reference.

  python benchmarks/train_throughput.py [--presets=udacity32,dcgan64] [--batch_sizes=64]

The JAX figure is main.py's own `images_per_sec` (the full D+G iteration on the on-device
input path, compile, logging and I/O excluded), from the last of two log intervals of a real
`main.py` run. The reference is benchmarks/torch_reference.py, the same architectures in the
pytorch/examples DCGAN loop with PyTorch's default settings, when torch is installed. The two
alternate for --rounds rounds on the same machine and the best of each is reported.
"""

import json
import os
import subprocess
import sys
import tempfile

from absl import app, flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from facegan_jax import config as config_lib  # noqa: E402
from facegan_jax import presets  # noqa: E402

flags.DEFINE_list('presets', ['udacity32', 'dcgan64'], 'presets from facegan_jax/presets.py')
flags.DEFINE_list('batch_sizes', ['64'], 'global batch sizes')
flags.DEFINE_integer('steps', 40, 'steps per log interval; the second interval is reported')
flags.DEFINE_integer('torch_steps', 20, 'timed PyTorch iterations (after 3 warm-up ones)')
flags.DEFINE_integer('rounds', 2, 'alternating JAX/PyTorch measurements; the best of each is '
                     'reported (the machine is shared: the best is the least disturbed)')
flags.DEFINE_string('dataset', 'synthetic_faces', 'dataset for the JAX runs')
flags.DEFINE_string('data_dir', None, 'prepared data location (default: TFDS default)')
flags.DEFINE_bool('torch', True, 'also run the PyTorch reference when torch is installed')
flags.DEFINE_list('extra_flags', [], 'extra main.py flags, e.g. conv_impl=xla')
FLAGS = flags.FLAGS


def jax_images_per_sec(preset, batch_size):
  """main.py's steady-state images_per_sec for `preset` at `batch_size`."""
  config = presets.preset(preset, batch_size=batch_size)
  with tempfile.TemporaryDirectory() as workdir:
    lines = config_lib.Config(**{**vars(config), 'dataset': FLAGS.dataset,
                                 'data_dir': FLAGS.data_dir}).to_flags().split()
    args = lines + [f'--workdir={workdir}', f'--num_steps={2 * FLAGS.steps}',
                    f'--log_every={FLAGS.steps}', '--sample_every=1000000',
                    '--checkpoint_every=1000000'] + [f'--{f}' for f in FLAGS.extra_flags]
    run = subprocess.run([sys.executable, os.path.join(ROOT, 'main.py')] + args,
                         capture_output=True, text=True)
    if run.returncode:
      sys.exit(f'main.py failed for {preset} at batch {batch_size}: '
               f'{(run.stderr.strip().splitlines() or ["no output"])[-1]}')
    with open(os.path.join(workdir, 'metrics.jsonl')) as f:
      return json.loads(f.readlines()[-1])['images_per_sec']


def main(argv):
  del argv
  try:
    import torch_reference  # noqa: F401  (imports torch)
    have_torch = FLAGS.torch
  except ImportError:
    have_torch = False
  print(f'{"preset":<10} {"batch":>5} {"jax img/s":>10} {"torch img/s":>12} {"ratio":>6}')
  for preset in FLAGS.presets:
    for batch_size in map(int, FLAGS.batch_sizes):
      ours, theirs = float('nan'), float('nan')
      for _ in range(FLAGS.rounds):
        ours = max(jax_images_per_sec(preset, batch_size), ours)
        if have_torch:
          theirs = max(torch_reference.images_per_sec(
              preset, batch_size, steps=FLAGS.torch_steps), theirs)
      print(f'{preset:<10} {batch_size:>5} {ours:>10.1f} {theirs:>12.1f} '
            f'{ours / theirs:>5.2f}x', flush=True)


if __name__ == '__main__':
  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
  app.run(main)
