"""Winograd's minimal filtering F(2x2, 2x2) and F(2x2, 3x3): a 2x2 (3x3) stride-1 convolution
in 9 (16) matmuls per 2x2 output tile where the direct form takes 16 (36) (Lavin & Gray, "Fast
Algorithms for Convolutional Neural Networks", 2016).

Both DCGAN resampling layers are 2x2 stride-1 convolutions in their space-to-depth forms, so
F(2x2, 2x2) cuts their forward arithmetic to 9/16; F(2x2, 3x3) cuts the ResNets' 3x3
convolutions to 16/36. The transforms' coefficients are 0, +-1 and (on F(2x2, 3x3)'s kernel)
+-1/2, so the result matches the direct convolution to float rounding (tests/test_ops.py).

In 1-D, outputs y0 = d0 g0 + d1 g1 and y1 = d1 g0 + d2 g1 of inputs d0..d2 and taps g0, g1 are
A^T [(G g) * (B^T d)]: three products instead of four. In 2-D the transforms act on rows and
then columns, and each of the 3x3 products is a matmul over the input channels.
"""

import jax.numpy as jnp

B_T = ((1, -1, 0), (0, 1, 0), (0, -1, 1))  # input tile d -> (d0 - d1, d1, d2 - d1)
G = ((1, 0), (1, 1), (0, 1))  # taps g -> (g0, g0 + g1, g1)
A_T = ((1, 1, 0), (0, 1, 1))  # products m -> (m0 + m1, m1 + m2)

# F(2x2, 3x3): outputs y0 = d0 g0 + d1 g1 + d2 g2 and y1 = d1 g0 + d2 g1 + d3 g2 of inputs
# d0..d3 and taps g0..g2 in four products.
B3_T = ((1, 0, -1, 0), (0, 1, 1, 0), (0, -1, 1, 0), (0, 1, 0, -1))
G3 = ((1, 0, 0), (0.5, 0.5, 0.5), (0.5, -0.5, 0.5), (0, 0, 1))
A3_T = ((1, 1, 1, 0), (0, 1, -1, -1))


def _combine(matrix, xs):
  """[sum_l matrix[j][l] * xs[l] for each row j], multiplying only by coefficients not +-1."""
  out = []
  for row in matrix:
    terms = [x if c == 1 else -x if c == -1 else c * x for c, x in zip(row, xs) if c]
    out.append(sum(terms[1:], terms[0]))
  return out


def _transform(matrix, xs_of_axis1, axis2):
  """The 2-D transform: `matrix` over the list `xs_of_axis1`, then over axis `axis2` of each
  result, which holds that transform's inputs as slices `axis2(x, l)`."""
  rows = _combine(matrix, xs_of_axis1)
  return jnp.stack([jnp.stack(_combine(matrix, [axis2(r, l) for l in range(len(matrix[0]))]))
                    for r in rows])


def transform_kernel(matrix, kernel):
  """matrix @ kernel @ matrix^T over the kernel's two spatial axes (K, K, I, O) ->
  (N, N, I, O), as sums of kernel slices: one elementwise loop, forward and backward (as an
  einsum XLA on CPU makes it a thin matmul and its transposes)."""
  return _transform(matrix, [kernel[l] for l in range(len(matrix[0]))], lambda r, l: r[l])


def _input_tiles(x, t, s, b_t=B_T):
  """The T x S input tiles of x: n x n windows at stride 2 (n = 3, or 4 with B3_T),
  transformed by `b_t` to (n, n, B, T, S, C)."""
  n = len(b_t)
  return _transform(b_t, [x[:, l:l + 2 * t:2] for l in range(n)],
                    lambda r, l: r[:, :, l:l + 2 * s:2])


def conv2x2(x, kernel):
  """VALID 2x2 stride-1 convolution: x (B, H + 1, W + 1, C), kernel (2, 2, C, O) ->
  (B, H, W, O). An odd H or W is computed one larger on a zero row or column, then cropped."""
  b, h, w, _ = x.shape
  if (h - 1) % 2 or (w - 1) % 2:
    x = jnp.pad(x, ((0, 0), (0, (h - 1) % 2), (0, (w - 1) % 2), (0, 0)))
    return conv2x2(x, kernel)[:, :h - 1, :w - 1]
  t, s = (h - 1) // 2, (w - 1) // 2
  v = _input_tiles(x, t, s)
  u = transform_kernel(G, kernel)  # (3, 3, C, O)
  m = jnp.einsum('ijbtsc,ijco->ijbtso', v, u)
  y = _transform(A_T, [m[i] for i in range(3)], lambda r, l: r[l])  # (2, 2, B, T, S, O)
  return y.transpose(2, 3, 0, 4, 1, 5).reshape(b, 2 * t, 2 * s, -1)


def conv3x3(x, kernel):
  """VALID 3x3 stride-1 convolution: x (B, H + 2, W + 2, C), kernel (3, 3, C, O) ->
  (B, H, W, O), F(2x2, 3x3). An odd H or W is computed one larger, then cropped."""
  b, h, w, _ = x.shape
  if h % 2 or w % 2:
    x = jnp.pad(x, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)))
    return conv3x3(x, kernel)[:, :h - 2, :w - 2]
  t, s = (h - 2) // 2, (w - 2) // 2
  v = _input_tiles(x, t, s, B3_T)
  u = transform_kernel(G3, kernel)  # (4, 4, C, O)
  m = jnp.einsum('ijbtsc,ijco->ijbtso', v, u)
  y = _transform(A3_T, [m[i] for i in range(4)], lambda r, l: r[l])  # (2, 2, B, T, S, O)
  return y.transpose(2, 3, 0, 4, 1, 5).reshape(b, 2 * t, 2 * s, -1)


def conv2x2_kernel_grad(x, g):
  """The gradient of conv2x2(x, kernel) for its kernel, at output gradient g (B, H, W, O):
  each of the 3x3 products' kernel gradient is one matmul over all tiles, (C, N) x (N, O).

  Written out rather than left to autodiff, whose contraction of the same tensors XLA runs
  more slowly on CPU ("Resampling layers"). Zero rows or columns make odd sizes even, as in
  conv2x2.
  """
  b, h, w, _ = g.shape
  if h % 2 or w % 2:
    return conv2x2_kernel_grad(jnp.pad(x, ((0, 0), (0, h % 2), (0, w % 2), (0, 0))),
                               jnp.pad(g, ((0, 0), (0, h % 2), (0, w % 2), (0, 0))))
  t, s = h // 2, w // 2
  v = _input_tiles(x, t, s)
  # The output transform's adjoint (A = G's pattern) maps each 2x2 gradient tile to 3x3.
  g = g.reshape(b, t, 2, s, 2, -1)
  dm = _transform(G, [g[:, :, 0], g[:, :, 1]], lambda r, l: r[:, :, :, l])
  du = jnp.einsum('ijbtsc,ijbtso->ijco', v, dm)
  # The kernel transform's adjoint (G^T = A^T's pattern) maps 3x3 back to 2x2.
  return _transform(A_T, [du[i] for i in range(3)], lambda r, l: r[l])
