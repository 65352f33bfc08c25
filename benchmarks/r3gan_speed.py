"""R3GAN's whole train step (RpGAN + R1 + R2 every step, D then G) here against the reference
PyTorch code's, same widths, groups and batch, in alternating rounds.

  python benchmarks/r3gan_speed.py --widths=32,32,32,16 --groups=4,4,4,2 \
      [--torch_python=/path/venv/bin/python --source=DIR] [--rounds=2]

Ours: the compiled step of step.make_train_fn on random images (one device, the CPU forms of
facegan_jax/ops), the fastest of --steps calls after the compile; with --conv_impl, one form
of every layer (e.g. xla: XLA's own grouped convolutions); with --r1_every=k, R1 and R2 every
k steps scaled by k (StyleGAN2's lazy R1, the CPU recipes' setting), timed over cycles of k
steps; XLA's GFLOP per step and MFU. The peer: benchmarks/r3gan_reference.py's speed meter,
run by --torch_python (a venv with torch) on the extracted brownvc/R3GAN tree --source. Each
round runs ours then theirs in fresh processes; the best of each is reported (the machine is
shared: the best is the least disturbed), and the median of the rounds' own ratios.
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def ours(args):
  """Images per second of our step (in this process)."""
  sys.path.insert(0, ROOT)
  from facegan_jax.run import runtime  # noqa: PLC0415
  runtime.configure()
  import jax  # noqa: PLC0415
  import numpy as np  # noqa: PLC0415

  from benchmarks import matmul_peak  # noqa: PLC0415
  from facegan_jax import config as config_lib, mesh as mesh_lib, ops  # noqa: PLC0415
  from facegan_jax import state as state_lib, step as step_lib  # noqa: PLC0415
  from facegan_jax.data import pipeline  # noqa: PLC0415
  resolution = 4 * 2 ** (len(args.widths.split(',')) - 1)
  config = config_lib.Config(model='r3gan', loss='rpgan', widths=args.widths, blocks=args.blocks,
                             groups=args.groups, resolution=resolution,
                             batch_size=args.batch, r1_gamma=args.gamma, beta1=0.0,
                             beta2=0.99, conv_impl=args.conv_impl, num_devices=1,
                             r1_every=args.r1_every)
  ops.set_forms(config.conv_impl)
  mesh = mesh_lib.make_mesh(1)
  state = state_lib.fresh_state(config, mesh_lib.replicated(mesh))
  step_fn = step_lib.make_train_fn(config, mesh)
  images = np.random.default_rng(0).integers(0, 256, (4 * args.batch, resolution, resolution, 3),
                                             dtype=np.uint8)
  inputs = pipeline.Input(config, images, mesh, state_lib.data_key(state), 0)
  # Compiles (with --r1_every=k, the steps with and without the penalties), then times
  # --steps cycles of k steps: lazy penalties cost their share of a cycle.
  k = args.r1_every
  for i in range(k):
    state, _ = step_fn(state, inputs(i), 1, i)
  times = []
  for cycle in range(1, args.steps + 1):
    start = time.perf_counter()
    for i in range(cycle * k, (cycle + 1) * k):
      state, _ = step_fn(state, inputs(i), 1, i)
    jax.block_until_ready(state)
    times.append(time.perf_counter() - start)
  # XLA's cost analysis of each step of a cycle (the penalised one and the others), and MFU
  # against the best rate of a 2048^2 matmul here and now.
  flops = 0.0
  for i in range(k):
    analysis = step_fn.lower(state, inputs(i), 1, i).compile().cost_analysis()
    flops += (analysis[0] if isinstance(analysis, list) else analysis)['flops']
  peak = matmul_peak.best_flops()
  rate = k * args.batch / min(times)
  print(f'GFLOP/step {flops / k / 1e9:.2f} MFU {flops / k * rate / args.batch / peak:.3f} '
        f'(matmul peak {peak / 1e9:.0f} GFLOP/s)')
  return rate


def run_ours(args):
  command = [sys.executable, __file__, '--_ours', f'--widths={args.widths}',
             f'--blocks={args.blocks}', f'--groups={args.groups}', f'--batch={args.batch}',
             f'--gamma={args.gamma}', f'--steps={args.steps}', f'--conv_impl={args.conv_impl}',
             f'--r1_every={args.r1_every}']
  out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
  print(f'  ours: {out.strip().splitlines()[-2]}', flush=True)
  return float(out.split()[-1])


def run_theirs(args):
  command = [args.torch_python, os.path.join(ROOT, 'benchmarks', 'r3gan_reference.py'),
             f'--source={args.source}', f'--widths={args.widths}', f'--blocks={args.blocks}',
             f'--groups={args.groups}', f'--batch={args.batch}', f'--gamma={args.gamma}',
             f'--steps={args.steps}', '--warmup=1']
  out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
  return float(re.split(r'\s+', out.strip().splitlines()[-1])[-1])


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--widths', default='32,32,32,16')
  parser.add_argument('--blocks', default='1')
  parser.add_argument('--groups', default='')
  parser.add_argument('--batch', type=int, default=64)
  parser.add_argument('--gamma', type=float, default=0.05)
  parser.add_argument('--steps', type=int, default=3)
  parser.add_argument('--rounds', type=int, default=2)
  parser.add_argument('--conv_impl', default='auto')
  parser.add_argument('--r1_every', type=int, default=1,
                      help='ours: R1 and R2 every k steps, scaled by k (the reference: every step)')
  parser.add_argument('--torch_python', default=None)
  parser.add_argument('--source', default=None)
  parser.add_argument('--_ours', action='store_true', help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args._ours:
    print(f'{ours(args):.2f}')
    return
  best_ours, best_theirs, ratios = 0.0, 0.0, []
  for _ in range(args.rounds):
    rate = run_ours(args)
    best_ours = max(best_ours, rate)
    if args.torch_python:
      theirs = run_theirs(args)
      best_theirs = max(best_theirs, theirs)
      ratios.append(rate / theirs)
      print(f'  round: ours {rate:.1f}, reference {theirs:.1f} img/s, {ratios[-1]:.2f}x',
            flush=True)
  if ratios:  # each round's own ratio: less swayed by one quiet minute than the bests' ratio
    print(f'  rounds\' ratios: median {statistics.median(ratios):.2f}x, '
          f'{min(ratios):.2f}-{max(ratios):.2f}x')
  ratio = f'{best_ours / best_theirs:.2f}x' if best_theirs else '-'
  print(f'{"widths":<16} {"groups":>10} {"batch":>5} {"ours img/s":>10} {"reference":>10} '
        f'{"ratio":>6}')
  print(f'{args.widths:<16} {args.groups or "16/group":>10} {args.batch:>5} {best_ours:>10.1f} '
        f'{best_theirs or float("nan"):>10.1f} {ratio:>6}')


if __name__ == '__main__':
  main()
