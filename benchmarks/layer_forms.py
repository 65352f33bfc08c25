"""Time of every form of the DCGAN resampling layers and the ResNets' 3x3 convolutions, per
layer shape.

  PYTHONPATH=. .venv/bin/python benchmarks/layer_forms.py [--repeats=15] [--batch=64]

First the forward pass of each form, in ms: what impl='auto' chooses by, since its backward
passes are forward forms too (each layer's input gradient is the other layer's forward pass)
plus XLA's kernel gradient. `*` marks the fastest form of each layer and the last column is
the one auto uses. Then the whole G and D stacks of both presets (their resampling layers
chained with ReLU between), forward and backward (`jax.vjp` with a fixed random cotangent),
impl='auto' against impl='xla'. Last, the ResNets' stride-1 3x3 convolutions: forward in
XLA's own form and Winograd F(2x2, 3x3), and forward+backward inside a loop as the train step
runs it, XLA's autodiff against auto (--parts=3x3 for this table alone). Each figure is the
minimum of --repeats samples taken with the candidates interleaved: on a shared machine the
least disturbed sample is the most repeatable. Takes ~2-3 minutes on 2 CPU cores, the 3x3
table about as long again. `--parts=blocks` (not in the default) times each SNGAN ResNet
block of --block_presets against PyTorch eager's textbook block.
"""

import os
import sys
import time

from facegan_jax.run import runtime

runtime.configure()  # as main.py does: the same CPU runtime settings

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from absl import app, flags  # noqa: E402

from facegan_jax import ops  # noqa: E402
from facegan_jax.ops import cpu, forms, winograd  # noqa: E402

flags.DEFINE_integer('batch', 64, 'batch size')
flags.DEFINE_integer('repeats', 15, 'interleaved samples per form; the minimum is reported')
flags.DEFINE_float('min_sample_s', 0.05, 'each sample repeats the call to last at least this')
flags.DEFINE_list('only', [], 'restrict to these forms (plus auto)')
flags.DEFINE_list('parts', ['up', 'down', 'stacks', '3x3'], 'which tables: the resampling '
                  'layers (up, down), their stacks, the ResNets\' 3x3 convolutions, and '
                  '`blocks`: the ResNets\' blocks against PyTorch eager (needs torch)')
flags.DEFINE_list('block_presets', ['sngan64'], 'with --parts=blocks: the ResNet presets')
FLAGS = flags.FLAGS

# (in, out, input size): generator upsampling layers, then discriminator downsampling layers.
UP = {'dcgan64': [(512, 256, 4), (256, 128, 8), (128, 64, 16), (64, 3, 32)],
      'udacity32': [(128, 64, 4), (64, 32, 8), (32, 3, 16)]}
DOWN = {'dcgan64': [(3, 64, 64), (64, 128, 32), (128, 256, 16), (256, 512, 8)],
        'udacity32': [(3, 32, 32), (32, 64, 16), (64, 128, 8)]}


# The ResNets' stride-1 3x3 convolutions (in, out, size), from G's and D's blocks at the
# presets' widths (resnet.LAYOUTS), and G's last one to RGB.
CONV3 = {'sngan32': [(256, 256, 8), (256, 256, 16), (256, 256, 32), (256, 3, 32),
                     (3, 128, 32), (128, 128, 16), (128, 128, 8)],
         'sngan64': [(512, 512, 8), (256, 256, 16), (128, 128, 32), (64, 64, 64), (64, 3, 64),
                     (3, 64, 64), (64, 64, 32), (256, 256, 8), (512, 512, 4)]}


def fwd_bwd(fn):
  """jit of (x, params, cotangent) -> (y, d/dx, d/dparams) of y = fn(x, params)."""
  def step(x, params, g):
    y, vjp = jax.vjp(fn, x, params)
    return y, vjp(g)
  return jax.jit(step)


def make_args(fn, x_shape, params, seed=0):
  x = jax.random.normal(jax.random.key(seed), x_shape)
  y = jax.eval_shape(fn, x, params)
  return x, params, jax.random.normal(jax.random.key(seed + 1), y.shape)


def time_interleaved(calls, repeats):
  """{name: min ms} of {name: (jitted, args)}, sampled round-robin."""
  loops = {}
  for name, (f, args) in calls.items():
    jax.block_until_ready(f(*args))  # compile
    start = time.perf_counter()
    jax.block_until_ready(f(*args))
    loops[name] = max(1, int(FLAGS.min_sample_s / (time.perf_counter() - start)))
  samples = {name: [] for name in calls}
  for _ in range(repeats):
    for name, (f, args) in calls.items():
      start = time.perf_counter()
      for _ in range(loops[name]):
        out = f(*args)
      jax.block_until_ready(out)
      samples[name].append((time.perf_counter() - start) / loops[name] * 1e3)
  return {name: min(s) for name, s in samples.items()}


def layer_table(title, op, forms, shapes, x_shape_of, auto_of):
  names = [f for f in forms if not FLAGS.only or f in FLAGS.only]
  print(f'\n{title} (ms, forward, batch {FLAGS.batch})')
  print(f'{"layer":>16} ' + ' '.join(f'{n:>12}' for n in names) + f' {"auto picks":>12}')
  for preset, layer_shapes in shapes.items():
    for c, o, s in layer_shapes:
      kernel = 0.02 * jax.random.normal(jax.random.key(2), (4, 4, c, o))
      x_shape = x_shape_of(c, s)
      calls = {}
      x = jax.random.normal(jax.random.key(0), x_shape)
      for name in names:
        calls[name] = (jax.jit(lambda x, k, name=name: op(x, k, name)), (x, kernel))
      ms = time_interleaved(calls, FLAGS.repeats)
      best = min(ms, key=ms.get)
      cells = ' '.join(f'{ms[n]:>11.1f}{"*" if n == best else " "}' for n in names)
      pick = auto_of(jnp.zeros(x_shape), kernel)
      print(f'{f"{c}->{o} @{s}":>16} {cells} {pick:>12}', flush=True)


def stack_fn(op, impl):
  def fn(x, kernels):
    for i, kernel in enumerate(kernels):
      x = op(x, kernel, impl)
      x = jax.nn.relu(x) if i < len(kernels) - 1 else x
    return x
  return fn


def stacks():
  print(f'\nWhole stacks of resampling layers (ms, fwd+bwd, batch {FLAGS.batch})')
  print(f'{"stack":>16} {"xla":>10} {"auto":>10} {"speedup":>8}')
  for preset in UP:
    for kind, op, shapes, x_shape in (
        ('G', ops.conv_transpose_4x2, UP[preset], lambda c, s: (FLAGS.batch, s, s, c)),
        ('D', ops.conv_4x2, DOWN[preset], lambda c, s: (FLAGS.batch, s, s, c))):
      kernels = [0.02 * jax.random.normal(jax.random.key(i), (4, 4, c, o))
                 for i, (c, o, _) in enumerate(shapes)]
      c, _, s = shapes[0]
      calls = {}
      for impl in ('xla', 'auto'):
        fn = stack_fn(op, impl)
        calls[impl] = (fwd_bwd(fn), make_args(fn, x_shape(c, s), kernels))
      ms = time_interleaved(calls, FLAGS.repeats)
      print(f'{f"{preset} {kind}":>16} {ms["xla"]:>10.1f} {ms["auto"]:>10.1f} '
            f'{ms["xla"] / ms["auto"]:>7.2f}x', flush=True)


def looped_fwd_bwd(fn, steps=2):
  """jit of `steps` forward+backward passes in a loop, as the train step runs them (where XLA
  CPU's own kernel gradient is slow), the kernel (or pytree of parameters) moving each time."""
  def run(x, kernel, g):
    def body(_, kernel):
      _, vjp = jax.vjp(fn, x, kernel)
      dx, dkernel = vjp(g)
      return jax.tree.map(lambda k, d: k - 1e-6 * d + 1e-9 * dx.mean(), kernel, dkernel)
    return jax.lax.fori_loop(0, steps, body, kernel)
  return jax.jit(run)


def conv3x3_table():
  """Forward: XLA's own and Winograd F(2x2, 3x3); forward+backward in a 2-step loop (ms per
  step): XLA's autodiff (one sample: it is tens of times slower) and auto (its forward pick
  and hand-written backward pass)."""
  print(f'\nResNet Conv2d(3, 1, 1) (ms, batch {FLAGS.batch}): forward, then fwd+bwd per step '
        'of a 2-step loop')
  print(f'{"layer":>20} {"xla":>9} {"winograd":>9} {"auto picks":>10} {"xla loop":>9} '
        f'{"auto loop":>9} {"speedup":>8}')
  pad = lambda x: jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))  # noqa: E731
  xla = lambda x, k: ops.conv_3x3(x, k, 'xla')  # noqa: E731
  for preset, shapes in CONV3.items():
    for c, o, s in shapes:
      x = jax.random.normal(jax.random.key(0), (FLAGS.batch, s, s, c))
      kernel = jax.random.normal(jax.random.key(1), (3, 3, c, o)) / (3 * c**0.5)
      g = jax.random.normal(jax.random.key(2), (FLAGS.batch, s, s, o))
      ms = time_interleaved({
          'xla': (jax.jit(xla), (x, kernel)),
          'winograd': (jax.jit(lambda x, k: winograd.conv3x3(pad(x), k)), (x, kernel)),
          'auto loop': (looped_fwd_bwd(ops.conv_3x3), (x, kernel, g))}, FLAGS.repeats)
      ms.update(time_interleaved({'xla loop': (looped_fwd_bwd(xla), (x, kernel, g))}, 1))
      print(f'{f"{preset} {c}->{o} @{s}":>20} {ms["xla"]:>9.1f} {ms["winograd"]:>9.1f} '
            f'{cpu.conv3x3_form(kernel):>10} {ms["xla loop"] / 2:>9.1f} '
            f'{ms["auto loop"] / 2:>9.1f} {ms["xla loop"] / ms["auto loop"]:>7.1f}x', flush=True)


def block_table():
  """Each SNGAN ResNet block of --block_presets, forward and backward (input and parameter
  gradients, BatchNorm in train mode, no spectral norm: it costs the same on both sides), ms
  per pass of a 2-pass loop as the train step runs them, beside PyTorch eager's textbook block
  (benchmarks/torch_reference.py) on the same thread count: where the whole-step ratio of
  benchmarks/mfu.py comes from."""
  import torch  # noqa: PLC0415  (optional: the benchmarks' extra)
  from benchmarks import torch_reference  # noqa: PLC0415
  from facegan_jax import presets  # noqa: PLC0415
  from facegan_jax.models import resnet  # noqa: PLC0415
  from flax import nnx  # noqa: PLC0415
  torch.set_num_threads(os.cpu_count())
  print(f'\nSNGAN ResNet blocks (ms, fwd+bwd per pass, batch {FLAGS.batch}), ours against '
        'PyTorch eager')
  print(f'{"block":>28} {"ours":>9} {"pytorch":>9} {"speedup":>8}')
  for preset in FLAGS.block_presets:
    config = presets.preset(preset)
    g_widths, d_layout = resnet.LAYOUTS[config.resolution]
    g_widths = [config.conv_dim * m for m in g_widths]
    d_widths = [config.channels] + [config.conv_dim * m for m, _ in d_layout]
    blocks, size = [], 4
    for a, b in zip(g_widths, g_widths[1:]):
      blocks.append((f'G {a}->{b} @{size}', size, a,
                     lambda a=a, b=b: resnet.GBlock(a, b, rngs=nnx.Rngs(0)),
                     lambda a=a, b=b: torch_reference.GBlock(a, b), True))
      size *= 2
    size = config.resolution
    for i, (_, down) in enumerate(d_layout):
      a, b = d_widths[i], d_widths[i + 1]
      blocks.append((f'D {a}->{b} @{size}{" down" if down else ""}', size, a,
                     lambda a=a, b=b, down=down, i=i: resnet.DBlock(
                         a, b, downsample=down, first=i == 0,
                         rngs=nnx.Rngs(0)),
                     lambda a=a, b=b, down=down, i=i: _plain(torch_reference.DBlock(
                         a, b, down, i == 0)), False))
      size //= 2 if down else 1
    total = [0.0, 0.0]
    for name, size, c, ours, theirs, train in blocks:
      graph, params, rest = nnx.split(ours(), nnx.Param, ...)
      fn = (lambda x, p, graph=graph, rest=rest, train=train:
            nnx.merge(graph, p, rest, copy=True)(x, **({'train': True} if train else {})))
      x = jax.random.normal(jax.random.key(0), (FLAGS.batch, size, size, c))
      y = jax.eval_shape(fn, x, params)
      g = jax.random.normal(jax.random.key(1), y.shape)
      ms = time_interleaved({'ours': (looped_fwd_bwd(fn), (x, params, g))}, FLAGS.repeats)
      torch_ms = _torch_fwd_bwd_ms(theirs(), (FLAGS.batch, c, size, size), FLAGS.repeats)
      total[0] += ms['ours'] / 2
      total[1] += torch_ms
      print(f'{f"{preset} {name}":>28} {ms["ours"] / 2:>9.1f} {torch_ms:>9.1f} '
            f'{torch_ms / (ms["ours"] / 2):>7.2f}x', flush=True)
    print(f'{f"{preset} all blocks":>28} {total[0]:>9.1f} {total[1]:>9.1f} '
          f'{total[1] / total[0]:>7.2f}x', flush=True)


def _plain(block):
  """torch_reference's D block without its spectral-norm parametrisations (plain weights)."""
  import torch  # noqa: PLC0415
  for module in block.modules():
    if isinstance(module, torch.nn.Conv2d) and hasattr(module, 'parametrizations'):
      torch.nn.utils.parametrize.remove_parametrizations(module, 'weight')
  return block


def _torch_fwd_bwd_ms(block, x_shape, repeats):
  """The minimum over `repeats` samples of one forward+backward of `block` (train mode) in ms."""
  import torch  # noqa: PLC0415
  block.train()
  x = torch.randn(*x_shape, requires_grad=True)
  g = torch.randn_like(block(x))
  samples = []
  for i in range(repeats + 2):  # two warm-up passes
    start = time.perf_counter()
    block.zero_grad()
    x.grad = None
    block(x).backward(g)
    if i >= 2:
      samples.append((time.perf_counter() - start) * 1e3)
  return min(samples)


def main(_):
  print(f'backend {jax.default_backend()}, {jax.device_count()} device(s), jax {jax.__version__}')
  if 'up' in FLAGS.parts:
    layer_table('Generator ConvTranspose2d(4, 2, 1)', ops.conv_transpose_4x2,
                forms.UP_FORMS, UP, lambda c, s: (FLAGS.batch, s, s, c),
                lambda x, kernel: cpu.up_form(x))
  if 'down' in FLAGS.parts:
    layer_table('Discriminator Conv2d(4, 2, 1)', ops.conv_4x2, forms.DOWN_FORMS,
                DOWN, lambda c, s: (FLAGS.batch, s, s, c), lambda x, kernel: cpu.down_form(x))
  if 'stacks' in FLAGS.parts:
    stacks()
  if '3x3' in FLAGS.parts:
    conv3x3_table()
  if 'blocks' in FLAGS.parts:
    block_table()


if __name__ == '__main__':
  sys.exit(app.run(main))
