"""Every form of the convolutions equals the textbook layer, forward and backward.

The textbook layers are written out below in NumPy straight from their definitions (PyTorch's
Conv2d(4, 2, 1) and ConvTranspose2d(4, 2, 1)), together with their gradients, so the tests need
no deep-learning framework as a reference.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from facegan_jax import config as config_lib, ops
from facegan_jax.ops import cpu, forms


def _dot(a, b):
  return np.einsum('bhwc,co->bhwo', a, b)


def conv_ref(x, w):
  """Conv2d(4, 2, 1): out[i, j] = sum over taps of xpad[2i + ky, 2j + kx] @ w[ky, kx]."""
  h, w_ = x.shape[1] // 2, x.shape[2] // 2
  xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  return sum(_dot(xp[:, ky:ky + 2 * h:2, kx:kx + 2 * w_:2], w[ky, kx])
             for ky in range(4) for kx in range(4))


def conv_ref_grads(x, w, g):
  xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  h, w_ = g.shape[1:3]
  dxp, dw = np.zeros_like(xp), np.zeros_like(w)
  for ky in range(4):
    for kx in range(4):
      window = (slice(None), slice(ky, ky + 2 * h, 2), slice(kx, kx + 2 * w_, 2))
      dxp[window] += _dot(g, w[ky, kx].T)
      dw[ky, kx] = np.einsum('bhwc,bhwo->co', xp[window], g)
  return dxp[:, 1:1 + x.shape[1], 1:1 + x.shape[2]], dw


def conv_transpose_ref(x, w):
  """ConvTranspose2d(4, 2, 1): input pixel (i, j) adds x[i, j] @ w[ky, kx] to output
  (2i - 1 + ky, 2j - 1 + kx)."""
  b, h, w_, _ = x.shape
  full = np.zeros((b, 2 * h + 2, 2 * w_ + 2, w.shape[-1]), x.dtype)
  for ky in range(4):
    for kx in range(4):
      full[:, ky:ky + 2 * h:2, kx:kx + 2 * w_:2] += _dot(x, w[ky, kx])
  return full[:, 1:2 * h + 1, 1:2 * w_ + 1]


def conv_transpose_ref_grads(x, w, g):
  h, w_ = x.shape[1:3]
  gp = np.pad(g, ((0, 0), (1, 1), (1, 1), (0, 0)))
  dx, dw = np.zeros_like(x), np.zeros_like(w)
  for ky in range(4):
    for kx in range(4):
      window = gp[:, ky:ky + 2 * h:2, kx:kx + 2 * w_:2]
      dx += _dot(window, w[ky, kx].T)
      dw[ky, kx] = np.einsum('bhwc,bhwo->co', x, window)
  return dx, dw


def _normal(seed, shape, dtype=np.float32):
  """Standard normal draws from NumPy (JAX's would compile a program for each shape)."""
  return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def _inputs(x_shape, c_out, out_shape_of):
  x = _normal(0, x_shape, np.float64)
  w = _normal(1, (4, 4, x_shape[-1], c_out), np.float64)
  g = _normal(2, out_shape_of(x_shape) + (c_out,), np.float64)
  return x, w, g


@functools.partial(jax.jit, static_argnums=(0, 1))
def _forward_backward(op, impl, x, w, g):
  """op's output and its gradients in x and w for the output gradient g, in one compiled call
  (as the train step runs the layers; op by op, each of a form's many small ops would compile
  on its own, several times slower)."""
  y, vjp = jax.vjp(lambda x, w: op(x, w, impl), x, w)
  return (y, *vjp(g))


def _check(op, impl, x, w, g, ref, ref_grads):
  y, dx, dw = _forward_backward(op, impl, jnp.float32(x), jnp.float32(w), jnp.float32(g))
  scale = np.sqrt(16 * x.shape[-1])  # each output sums 16 * C unit-variance products
  np.testing.assert_allclose(y, ref(x, w), atol=1e-5 * scale, rtol=1e-5)
  want_dx, want_dw = ref_grads(x, w, g)
  np.testing.assert_allclose(dx, want_dx, atol=1e-5 * np.sqrt(16 * w.shape[-1]), rtol=1e-5)
  np.testing.assert_allclose(dw, want_dw, atol=1e-5 * np.sqrt(g[..., 0].size), rtol=1e-5)


# Odd sizes occur in D for the 28x28 digit models (28 -> 14 -> 7) and at 7 -> 3. On CPU, 128
# channels at 16x16 and below take auto's autodiffed Winograd form (here at an odd output
# size, 3x3), and above 16x16 its hand-written backward pass with the Winograd kernel gradient.
@pytest.mark.parametrize('impl', sorted(forms.DOWN_FORMS) + ['auto'])
@pytest.mark.parametrize('x_shape, c_out', [((2, 8, 8, 3), 5), ((3, 4, 6, 6), 2),
                                            ((2, 7, 7, 4), 3), ((2, 6, 6, 128), 3),
                                            ((1, 18, 18, 128), 2)])
def test_conv_4x2_equals_textbook(impl, x_shape, c_out):
  x, w, g = _inputs(x_shape, c_out, lambda s: (s[0], s[1] // 2, s[2] // 2))
  _check(ops.conv_4x2, impl, x, w, g, conv_ref, conv_ref_grads)


@pytest.mark.parametrize('impl', sorted(forms.UP_FORMS) + ['auto'])
@pytest.mark.parametrize('x_shape, c_out', [((2, 4, 4, 6), 3), ((3, 7, 5, 2), 4),
                                            ((2, 3, 3, 4), 128), ((1, 2, 2, 1024), 2)])
def test_conv_transpose_4x2_equals_textbook(impl, x_shape, c_out):
  x, w, g = _inputs(x_shape, c_out, lambda s: (s[0], 2 * s[1], 2 * s[2]))
  _check(ops.conv_transpose_4x2, impl, x, w, g, conv_transpose_ref, conv_transpose_ref_grads)


def test_kernel_gradients_of_large_maps():
  """From 2**22 elements the kernel gradients transpose their input in three passes (an
  identity product among them): exactly the one transpose, and the gradients still match."""
  x_shape = (16, 64, 64, 64)
  assert np.prod(x_shape) >= 2**22
  x, w, g = _inputs(x_shape, 2, lambda s: (s[0], s[1] // 2, s[2] // 2))
  relu = jax.jit(lambda x: cpu.channels_first_batch_last(jax.nn.relu(x)))(jnp.float32(x))
  np.testing.assert_array_equal(relu, np.maximum(np.float32(x), 0).transpose(3, 1, 2, 0))
  _check(ops.conv_4x2, 'auto', x, w, g, conv_ref, conv_ref_grads)
  k3, g3 = jnp.float32(w[:3, :3]), _normal(5, x_shape[:3] + (2,))
  grads = [jax.jit(jax.grad(lambda k, impl=impl: jnp.sum(
      ops.conv_3x3(jnp.float32(x), k, impl) * g3)))(k3) for impl in ('auto', 'xla')]
  np.testing.assert_allclose(grads[0], grads[1], rtol=1e-4, atol=1e-4 * np.abs(grads[1]).max())


def test_references_match_each_other():
  """The two references are adjoint, <conv_T(x), y> == <x, conv(y)>, as the layers must be."""
  x, w, _ = _inputs((2, 4, 4, 3), 5, lambda s: s[:3])
  y = _normal(9, (2, 8, 8, 5), np.float64)
  lhs = np.vdot(conv_transpose_ref(x, w), y)
  rhs = np.vdot(x, conv_ref(y, w.transpose(0, 1, 3, 2)))
  assert lhs == pytest.approx(rhs, rel=1e-12)


def test_config_offers_auto_and_the_reference():
  """--conv_impl offers 'auto' and XLA's own ops, a form of both layers; the other forms are
  for benchmarks and these tests."""
  assert set(config_lib.choices()['conv_impl']) == {'auto', 'xla'}
  assert 'xla' in forms.DOWN_FORMS and 'xla' in forms.UP_FORMS


@pytest.mark.parametrize('varying', [True, False], ids=['varying', 'replicated'])
def test_layers_on_two_devices_equal_one(varying):
  """Under shard_map on a 2-device data axis, auto's forms and kernel gradients (the 3x3 layer's too), the Winograd
  ones included (128+ channels), give the one-device outputs and gradients, with kernels
  varying over the axis (as in the train step) or replicated (summed by the layer)."""
  mesh = jax.make_mesh((2,), ('data',))
  sharded = NamedSharding(mesh, P('data'))

  def check(op, impl, x_shape, kernel_shape):
    x, k = (_normal(i, s) for i, s in enumerate((x_shape, kernel_shape)))
    g = _normal(3, jax.eval_shape(lambda x, k: op(x, k, 'xla'), x, k).shape)

    def fwd_bwd(x, k, g):
      if varying:
        k = jax.lax.pcast(k, 'data', to='varying')
      y, vjp = jax.vjp(lambda x, k: op(x, k, impl), x, k)
      dx, dk = vjp(g)
      return y, dx, jax.lax.psum(dk, 'data') if varying else dk

    got = jax.jit(jax.shard_map(fwd_bwd, mesh=mesh, in_specs=(P('data'), P(), P('data')),
                                out_specs=(P('data'), P('data'), P())))(
        jax.device_put(x, sharded), k, jax.device_put(g, sharded))
    for a, b in zip(got, _forward_backward(op, 'xla', x, k, g)):
      err = float(jnp.abs(a - b).max() / jnp.abs(b).max())
      assert err < 1e-5, (op.__name__, impl, x_shape, err)

  # A replicated kernel's gradient is summed over the devices by the hand-written backward
  # passes (ops/cpu.py, 'auto's forms) and by JAX's autodiff in the others: 'auto' alone.
  for impl in ('auto', 'winograd', 'winograd_phase') if varying else ('auto',):
    check(ops.conv_transpose_4x2, impl, (4, 4, 4, 256), (4, 4, 256, 128))
    check(ops.conv_transpose_4x2, impl, (4, 8, 8, 128), (4, 4, 128, 64))
  for impl in ('auto', 'winograd') if varying else ('auto',):
    check(ops.conv_4x2, impl, (4, 8, 8, 128), (4, 4, 128, 256))
  check(ops.conv_4x2, 'auto', (4, 18, 18, 128), (4, 4, 128, 8))  # the hand-written pass
  check(ops.conv_transpose_4x2, 'auto', (4, 2, 2, 1024), (4, 4, 1024, 8))
  check(ops.conv_3x3, 'auto', (4, 6, 6, 8), (3, 3, 8, 4))

