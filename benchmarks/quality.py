"""The quality scoreboard: named recipes trained for a fixed wall-clock budget, each metric
against wall-clock time.

  python benchmarks/quality.py                        # every recipe, 240 s each
  python benchmarks/quality.py --recipes=digits_mlp --budget_s=120 --write

Each recipe is `python main.py --flagfile=...` with --eval_every, started fresh in its own
workdir; its clock starts with the process (imports, data already prepared, compilation
included) and stops at each evaluation (the evaluation's own time is not counted). At the
budget the run is stopped with SIGINT; every evaluation up to then is a point on its curve.
Digit recipes train on scikit-learn's real digits (benchmarks/sklearn_digits.py; needs
requirements-test.txt) and report the class metrics; the face recipes synthetic_faces'
domain metrics. Floors are the real-vs-real values (benchmarks/eval_floor.py's for the
domain metrics; the class metrics carry theirs). --write appends the table to
benchmarks/RESULTS.md and writes benchmarks/quality_RECIPE.png.
"""

import dataclasses
import datetime
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

from absl import app, flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks import sklearn_digits  # noqa: E402

DIGITS = '{digits}'  # replaced by the digits tree's path


@dataclasses.dataclass(frozen=True)
class Recipe:
  flagfile: str
  flags: tuple[str, ...]
  metrics: tuple[str, ...]  # the ones on the scoreboard, first one the headline
  eval_every: int
  floors: dict = dataclasses.field(default_factory=dict)  # real vs real, where not recorded


# The real-vs-real floors of synthetic_faces' metrics at --eval_samples=2048:
# `python benchmarks/eval_floor.py --flagfile=experiments/quickstart.flags` (2026-12-01).
FACES_FLOORS = dict(swd=6.99, domain_fd=16.50, attr_w1=0.035, attr_tv=0.014)

# The same at --eval_samples=512 on synthetic_faces/small (1,024 images: 512 others to compare):
# `python benchmarks/eval_floor.py --flagfile=experiments/small_faces_ada.flags` (2026-12-02).
SMALL_FLOORS = dict(swd=19.10, domain_fd=14.61, attr_w1=0.084, attr_tv=0.021)
SMALL = ('domain_fd', 'swd', 'attr_tv')

RECIPES = dict(
    # The flagfile's own length: its learning rates decay to 0 at its --num_steps.
    quickstart=Recipe('quickstart.flags', (),
                      ('domain_fd', 'swd', 'attr_tv'), 500, FACES_FLOORS),
    # The quickstart until 2026-12-06, and the base of the two recipes after it.
    sn_dcgan_quickstart=Recipe('sn_dcgan_quickstart.flags', (),
                               ('domain_fd', 'swd', 'attr_tv'), 500, FACES_FLOORS),
    # SNGAN's ResNets (width 32: G 64 channels, D 32) with spectral norm on D and hinge, at
    # Adam at 1e-3 for both (the earlier quickstart's rates), the quickstart's EMA and its
    # earlier budget; its 600 steps (the decay over the last 300) are what the 2-core CPU
    # runs in that time.
    quickstart_resnet=Recipe('sn_dcgan_quickstart.flags', (
        '--model=resnet', '--conv_dim=32', '--spectral_norm=d', '--loss=hinge',
        '--label_smoothing=1.0', '--lr_d=1e-3', '--num_steps=600', '--lr_decay_start=300'),
        ('domain_fd', 'swd', 'attr_tv'), 150, FACES_FLOORS),
    # Its DCGAN with R3GAN's objective: RpGAN with R1 and R2 every step (BatchNorm D, no
    # spectral norm, no smoothing), without the decay.
    quickstart_rpgan=Recipe('sn_dcgan_quickstart.flags', (
        '--loss=rpgan', '--r1_gamma=0.5', '--spectral_norm=none', '--label_smoothing=1.0'),
        ('domain_fd', 'swd', 'attr_tv'), 500, FACES_FLOORS),
    # The quickstart (since 2026-12-06) with the penalties every step, 6,000 steps, the rates
    # decayed over the last 2,000 (until then 3,000 and 1,000).
    dcgan_rpgan_faces=Recipe('dcgan_rpgan_faces.flags', (), ('domain_fd', 'swd', 'attr_tv'),
                             500, FACES_FLOORS),
    # R3GAN's networks and objective sized for the CPU (about 30 minutes).
    r3gan_faces32=Recipe('r3gan_faces32.flags', (), ('domain_fd', 'swd', 'attr_tv'), 250,
                         FACES_FLOORS),
    # Spectral norm on D and a two-timescale D, 6,000 steps.
    sn_dcgan_faces=Recipe('sn_dcgan_faces.flags', (), ('domain_fd', 'swd', 'attr_tv'), 1000,
                          FACES_FLOORS),
    # Keeping D from overfitting 1,024 images: one recipe, three augmentations.
    small_faces=Recipe('small_faces_ada.flags', ('--augment=none',), SMALL, 500, SMALL_FLOORS),
    small_faces_diffaug=Recipe('small_faces_ada.flags', ('--augment=diffaug',), SMALL, 500,
                               SMALL_FLOORS),
    small_faces_ada=Recipe('small_faces_ada.flags', (), SMALL, 500, SMALL_FLOORS),
    # DiffAugment's translation and cutout without its color (a comma inside one flag).
    small_faces_diffaug_tc=Recipe('small_faces_ada.flags', (
        '--augment=diffaug', '--diffaug_policy=translation,cutout'), SMALL, 500, SMALL_FLOORS),
    # The same 3.3x longer (~650 epochs), where D has longer to memorise the set.
    small_faces_long=Recipe('small_faces_ada.flags', ('--augment=none', '--num_steps=10000',
                                                      '--lr_decay_start=5000'), SMALL, 1000,
                            SMALL_FLOORS),
    small_faces_ada_long=Recipe('small_faces_ada.flags', ('--num_steps=10000',
                                                          '--lr_decay_start=5000'), SMALL, 1000,
                                SMALL_FLOORS),
    # DiffAugment's color alone over the same 10,000 steps: brightness, saturation and contrast
    # move no head and no light, which D must still match.
    small_faces_diffaug_color_long=Recipe('small_faces_ada.flags', (
        '--augment=diffaug', '--diffaug_policy=color', '--num_steps=10000',
        '--lr_decay_start=5000'), SMALL, 1000, SMALL_FLOORS),
    digits_mlp=Recipe('mnist_mlp.flags', (f'--dataset=folder:{DIGITS}', '--num_steps=1000000',
                                          '--eval_samples=800'),
                      ('class_fd', 'class_coverage', 'class_tv', 'swd'), 2000),
    digits_dcgan=Recipe('mnist_dcgan.flags', (f'--dataset=folder:{DIGITS}',
                                              '--num_steps=1000000', '--eval_samples=800'),
                        ('class_fd', 'class_coverage', 'class_tv', 'swd'), 500),
)
FLAGS = flags.FLAGS
flags.DEFINE_list('recipes', list(RECIPES), f'recipes to run, of {", ".join(RECIPES)}')
flags.DEFINE_integer('budget_s', 240, 'wall-clock seconds of training per recipe')
flags.DEFINE_string('workdir', '', 'where the runs go (default: a temporary directory)')
flags.DEFINE_bool('write', False, 'append the table to benchmarks/RESULTS.md and write the '
                  'curves to benchmarks/quality_RECIPE.png')
flags.DEFINE_list('extra_flags', [], 'more main.py flags for every recipe, comma-separated, e.g. '
                  '--lr_d=4e-4,--schedule=lr_g:cosine:1e-4,lr_d:cosine:1e-4 (a value with '
                  'commas stays whole)')

HEALTH_FLAGS = ('collapse', 'd_wins')  # health.py's, counted in each recipe's table
EVAL_LINE = re.compile(r'eval at step (\d+) \((\d+) s\)')


def main_flags(pieces):
  """--extra_flags as main.py's flags: a list flag splits at every comma, so a piece that does
  not start with '-' is the rest of the value before it (--schedule=a,b)."""
  flags_ = []
  for piece in pieces:
    if flags_ and not piece.startswith('-'):
      flags_[-1] += ',' + piece
    else:
      flags_.append(piece)
  return flags_


def run_recipe(name, recipe, workdir, digits, budget_s):
  """Trains `recipe` for `budget_s` seconds of training; returns [(seconds, step, metrics)]."""
  args = [a.replace(DIGITS, digits) for a in recipe.flags]
  command = [sys.executable, os.path.join(ROOT, 'main.py'),
             f'--flagfile={os.path.join(ROOT, "experiments", recipe.flagfile)}', *args,
             f'--eval_every={recipe.eval_every}', f'--workdir={workdir}',
             *main_flags(FLAGS.extra_flags)]
  print(f'{name}: {" ".join(command[1:])}', flush=True)
  started = time.monotonic()
  process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, stdin=subprocess.DEVNULL, cwd=ROOT)
  evals, eval_seconds, lines = [], 0.0, []
  lock = threading.Lock()

  def drain():  # every line, as it comes: the clock of an evaluation is when its line arrives
    nonlocal eval_seconds
    for line in process.stdout:
      lines.append(line)
      match = EVAL_LINE.search(line)
      if match:
        with lock:
          eval_seconds += float(match[2])
          evals.append((time.monotonic() - started - eval_seconds, int(match[1])))

  reader = threading.Thread(target=drain)
  reader.start()
  while process.poll() is None:
    with lock:
      clock = time.monotonic() - started - eval_seconds
    if clock > budget_s:
      process.send_signal(signal.SIGINT)
      break
    time.sleep(0.5)
  process.wait()
  reader.join()
  if process.returncode not in (0, 130) and not evals:
    sys.exit(f'{name} failed:\n{"".join(lines[-30:])}')
  records, flagged = {}, {}
  if not os.path.exists(os.path.join(workdir, 'metrics.jsonl')):
    sys.exit(f'{name}: the budget of {budget_s} s ended before its first logged step; give it '
             'a longer --budget_s')
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    for line in f:
      row = json.loads(line)
      if 'eval' in row:
        records[row['step']] = row['eval']['metrics']
      for flag in HEALTH_FLAGS:
        if row.get(flag):
          flagged.setdefault(flag, []).append(row['step'])
  return [(seconds, step, records[step]) for seconds, step in evals if step in records], flagged


def floor(recipe, metrics, name):
  """The real-vs-real value of metric `name`: recorded with it, or the recipe's, or None."""
  return metrics[name].get('floor', recipe.floors.get(name))


def table(name, recipe, points, flagged, budget_s):
  header = ['seconds', 'step'] + [m.replace('_', ' ') for m in recipe.metrics]
  lines = [f'### {name}: `--flagfile=experiments/{recipe.flagfile} '
           f'{" ".join(recipe.flags).replace(DIGITS, "DIGITS")}`, {budget_s} s budget',
           '', '| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
  for seconds, step, metrics in points:
    cells = [f'{seconds:.0f}', str(step)] + [_format(metrics[m]['value']) for m in recipe.metrics]
    lines.append('| ' + ' | '.join(cells) + ' |')
  if points:
    floors = [_format(floor(recipe, points[-1][2], m)) for m in recipe.metrics]
    lines.append('| floor | real vs real | ' + ' | '.join(floors) + ' |')
  for flag in HEALTH_FLAGS:
    steps = flagged.get(flag, [])
    lines.append(f'\n`{flag}` flagged at {len(steps)} logged steps'
                 + (f' (first {steps[0]}, last {steps[-1]})' if steps else ''))
  return '\n'.join(lines)


def _format(value):
  if value is None:
    return 'n/a'
  if isinstance(value, int):
    return str(value)
  return f'{value:.3f}' if abs(value) < 10 else f'{value:.1f}'


def plot(name, recipe, points, path):
  import matplotlib  # noqa: PLC0415
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # noqa: PLC0415
  fig, axes = plt.subplots(1, len(recipe.metrics), figsize=(3.2 * len(recipe.metrics), 2.8))
  seconds = [p[0] for p in points]
  for ax, metric in zip(axes, recipe.metrics):
    ax.plot(seconds, [p[2][metric]['value'] for p in points], 'o-', ms=3)
    level = floor(recipe, points[-1][2], metric)
    if level is not None:
      ax.axhline(level, color='gray', ls='--', lw=1, label='real vs real')
      ax.legend(fontsize=7)
    ax.set_title(metric, fontsize=9)
    ax.set_xlabel('training seconds (2 cores)', fontsize=8)
    ax.tick_params(labelsize=7)
  fig.suptitle(name, fontsize=10)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def main(argv):
  del argv
  unknown = set(FLAGS.recipes) - set(RECIPES)
  if unknown:
    sys.exit(f'unknown recipes {sorted(unknown)}; known: {", ".join(RECIPES)}')
  root = FLAGS.workdir or tempfile.mkdtemp(prefix='facegan_quality_')
  digits = sklearn_digits.write_tree(os.path.join(root, 'sklearn_digits'))
  sections = []
  for name in FLAGS.recipes:
    workdir = os.path.join(root, name)
    shutil.rmtree(workdir, ignore_errors=True)
    points, flagged = run_recipe(name, RECIPES[name], workdir, digits, FLAGS.budget_s)
    section = table(name, RECIPES[name], points, flagged, FLAGS.budget_s)
    print(section, flush=True)
    sections.append(section)
    if FLAGS.write and points:
      png = os.path.join(ROOT, 'benchmarks', f'quality_{name}.png')
      plot(name, RECIPES[name], points, png)
      sections.append(f'\n![{name}](quality_{name}.png)')
  if FLAGS.write:
    command = ' '.join(['python benchmarks/quality.py', *sys.argv[1:]])
    with open(os.path.join(ROOT, 'benchmarks', 'RESULTS.md'), 'a') as f:
      f.write(f'\n## Quality vs wall-clock, {datetime.date.today()} ({platform.machine()}, '
              f'{os.cpu_count()} cores)\n\n`{command}`: each row an evaluation during '
              'training; seconds are wall-clock from the start of main.py, evaluation time '
              'excluded.\n\n' + '\n\n'.join(sections) + '\n')


if __name__ == '__main__':
  app.run(main)
