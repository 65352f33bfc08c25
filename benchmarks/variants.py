"""Every shipped flagfile with one flag overridden trains: `python benchmarks/variants.py`.

A researcher derives an experiment from a flagfile by overriding one flag; each of OVERRIDES
applied to each experiments/*.flags must give a sensible run, not an error. Each variant runs
main.py for a few steps on stand-in data (synthetic_faces/small at the flagfile's resolution
and channels: the flagfiles' own datasets are downloads) and must exit 0 with a checkpoint.
tests/test_variants.py checks in the suite that every variant validates and builds its state;
this script is the slower, full check: on 2 cores 15-25 s a 28-pixel variant, up to several
minutes a 64-pixel one at batch 128.
"""

import argparse
import glob
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGFILES = sorted(glob.glob(os.path.join(ROOT, 'experiments', '*.flags')))
# The overrides issue 33 names: a smoke test, another loss, another family, another
# augmentation and another resolution.
OVERRIDES = ('--num_steps=40', '--loss=hinge', '--model=resnet', '--augment=ada',
             '--resolution=64')
STEPS = 4  # of the variants that do not set --num_steps themselves


def command(flagfile, override, workdir, data_dir):
  """main.py on `flagfile` plus `override`, on stand-in data, a few steps."""
  steps = [] if override.startswith('--num_steps=') else [f'--num_steps={STEPS}']
  return [sys.executable, os.path.join(ROOT, 'main.py'), f'--flagfile={flagfile}', override,
          '--dataset=synthetic_faces/small', f'--data_dir={data_dir}', f'--workdir={workdir}',
          *steps, '--log_every=2', '--sample_every=1000', '--checkpoint_every=1000']


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--workdir', default=os.path.join(tempfile.gettempdir(), 'variants'))
  parser.add_argument('--only', default='', help='substring of the flagfiles to run')
  args = parser.parse_args()
  data_dir = os.path.join(args.workdir, 'data')
  failed = []
  for flagfile in FLAGFILES:
    if args.only not in os.path.basename(flagfile):
      continue
    for override in OVERRIDES:
      name = f'{os.path.basename(flagfile)[:-6]}{override.replace("--", "_").replace("=", "_")}'
      started = time.perf_counter()
      run = subprocess.run(command(flagfile, override, os.path.join(args.workdir, name),
                                   data_dir),
                           capture_output=True, text=True, cwd=ROOT, stdin=subprocess.DEVNULL)
      ok = run.returncode == 0
      last = (run.stderr.strip().splitlines() or [''])[-1] if not ok else ''
      print(f'{name:50s} {"ok" if ok else "FAILED"} {time.perf_counter() - started:6.1f} s '
            f'{last}', flush=True)
      if not ok:
        failed.append(name)
  print(f'{len(failed)} failed' + (f': {", ".join(failed)}' if failed else ''))
  sys.exit(1 if failed else 0)


if __name__ == '__main__':
  main()
