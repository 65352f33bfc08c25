"""The FID Inception port and its weight reader.

tests/data/*.pth were written by torch 2.13 (torch.save of the state_dict built in
`expected_state_dict`, in both of its layouts) so that the reader is tested without torch;
malicious.pth is state_dict_zip.pth with a data.pkl that calls os.system when unpickled.
The port itself is checked against tests/fid_inception_torch.py (pytorch-fid's network in plain
PyTorch) with random weights when torch is installed; it is not in requirements-test.txt (see
the README), so that test is skipped in CI.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from PIL import Image

from facegan_jax.evaluation import fid
from facegan_jax.evaluation import inception
from facegan_jax.evaluation import torch_weights

DATA = os.path.join(os.path.dirname(__file__), 'data')


def expected_state_dict():
  w = np.arange(12, dtype=np.float32).reshape(3, 4)
  return {'conv.weight': w, 'conv.t': w.T, 'bn.num_batches_tracked': np.int64(7),
          'p': np.array([0.5, -1.5], np.float32), 'tail': w[1:]}


@pytest.mark.parametrize('layout', ['zip', 'legacy'])
def test_reads_both_torch_save_layouts(layout):
  got = torch_weights.load(os.path.join(DATA, f'state_dict_{layout}.pth'))
  want = expected_state_dict()
  assert list(got) == list(want)
  for name, value in want.items():
    assert got[name].dtype == value.dtype and np.array_equal(got[name], value), name


def test_refuses_pickled_code(tmp_path):
  marker = '/tmp/facegan_jax_pwned'
  with pytest.raises(torch_weights.UnsafeWeightsError, match='refusing to load .*system'):
    torch_weights.load(os.path.join(DATA, 'malicious.pth'))
  assert not os.path.exists(marker)
  not_torch = tmp_path / 'x.pth'
  not_torch.write_bytes(b'\x80\x02K\x01.')  # a pickle of the number 1
  with pytest.raises(torch_weights.UnsafeWeightsError, match='neither a PyTorch zip'):
    torch_weights.load(str(not_torch))


def _state_dict_of(model):
  """A pytorch-fid-style state_dict (OIHW kernels) of a FIDInception's arrays."""
  out = {}
  for path, value in nnx_arrays(model):
    prefix, field = '.'.join(path[:-1]), path[-1]
    torch_field = {v: k for k, v in inception._FIELDS.items()}[field]
    array = np.asarray(value)
    out[f'{prefix}.{torch_field}'] = array.transpose(3, 2, 0, 1) if field == 'kernel' else array
  return out


def nnx_arrays(model):
  for path, node in nnx.iter_graph(model):
    if isinstance(node, nnx.Variable):
      yield tuple(map(str, path)), node[...]


def random_inception_npz(path, seed=0):
  """Writes random FID Inception weights (He-scaled, so activations stay finite through the
  network) as an .npz by pytorch-fid's names; returns `path`."""
  rng = np.random.default_rng(seed)
  arrays = {}
  for name, value in _state_dict_of(inception.FIDInception()).items():
    if name.endswith('conv.weight'):
      fan_in = np.prod(value.shape[1:])
      value = rng.normal(size=value.shape) * np.sqrt(2 / fan_in)
    elif name.endswith('bn.weight') or name.endswith('bn.running_var'):
      value = rng.uniform(0.5, 1.5, value.shape)
    else:
      value = rng.normal(0, 0.1, value.shape)
    arrays[name] = value.astype(np.float32)
  np.savez(path, **arrays)
  return path


def test_load_state_dict_round_trip_and_errors():
  model = inception.FIDInception()
  rng = np.random.default_rng(0)
  weights = {k: rng.normal(size=v.shape).astype(np.float32)
             for k, v in _state_dict_of(model).items()}
  assert len(weights) == 94 * 5  # 94 conv + BatchNorm layers, as in pytorch-fid's file
  inception.load_state_dict(model, {**weights, 'fc.weight': np.zeros((1008, 2048))})
  assert all(np.array_equal(v, weights[k]) for k, v in _state_dict_of(model).items())

  missing = dict(weights)
  del missing['Mixed_7c.branch_pool.bn.running_var']
  with pytest.raises(ValueError, match='lack Mixed_7c.branch_pool.bn.running_var'):
    inception.load_state_dict(inception.FIDInception(), missing)
  with pytest.raises(ValueError, match="unexpected array 'Mixed_8a.conv.weight'"):
    inception.load_state_dict(inception.FIDInception(),
                              {**weights, 'Mixed_8a.conv.weight': np.zeros(1)})
  wrong = {**weights, 'Conv2d_1a_3x3.conv.weight': np.zeros((32, 3, 5, 5), np.float32)}
  with pytest.raises(ValueError, match=r'Conv2d_1a_3x3.conv.weight has shape \(32, 3, 5, 5\), '
                                       r'.* needs \(32, 3, 3, 3\)'):
    inception.load_state_dict(inception.FIDInception(), wrong)


def test_clean_fid_resize_is_pil_bicubic_per_channel():
  images = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), np.uint8)
  got = np.asarray(inception.resize(images, 'clean_fid'))
  channel = Image.fromarray(images[1, ..., 2].astype(np.float32), mode='F')
  want = np.clip(np.asarray(channel.resize((299, 299), Image.BICUBIC)), 0, 255) / 127.5 - 1
  np.testing.assert_allclose(got[1, ..., 2], want, atol=1e-6)
  assert got.min() >= -1 and got.max() <= 1
  with pytest.raises(ValueError, match="resize mode 'nearest'"):
    inception.resize(images, 'nearest')


def test_port_matches_pytorch_fid_network_with_random_weights(tmp_path):
  torch = pytest.importorskip('torch', reason='torch (a test-only extra) is not installed')
  from tests import fid_inception_torch

  reference = fid_inception_torch.randomized(seed=0)
  path = str(tmp_path / 'random_inception.pth')
  torch.save(reference.state_dict(), path)
  model = inception.FIDInception()
  inception.load_state_dict(model, torch_weights.load(path))  # through the safe reader

  images = np.random.default_rng(1).integers(0, 256, (2, 64, 64, 3), np.uint8)
  nchw = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
  # pytorch-fid's own preprocessing: bilinear to 299 (align_corners=False), then 2x - 1.
  x_ref = 2 * torch.nn.functional.interpolate(nchw, size=(299, 299), mode='bilinear',
                                                  align_corners=False) - 1
  x = inception.resize(images, 'pytorch_fid')
  np.testing.assert_allclose(np.asarray(x), x_ref.permute(0, 2, 3, 1).numpy(), atol=1e-5)

  with torch.no_grad():
    want = reference(x_ref).numpy()
  got = np.asarray(jax.jit(lambda m, x: m(x))(model, jnp.asarray(x)))
  assert got.shape == (2, 2048)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


class _MeanColour(nnx.Module):
  """A stand-in feature network: per-image mean colour, (N, 3)."""

  def __call__(self, x):
    return x.mean(axis=(1, 2))


def test_real_features_are_cached_per_key(tmp_path, monkeypatch):
  monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path))
  images = np.random.default_rng(0).integers(0, 256, (6, 16, 16, 3), np.uint8)
  key = dict(dataset='d', resolution=16, split='train', subset='s', weights='w',
             resize='pytorch_fid')
  first, cached = fid.cached_real_features(_MeanColour(), images, 'pytorch_fid', key)
  assert not cached and first.shape == (6, 3)
  again, cached = fid.cached_real_features(_MeanColour(), images, 'pytorch_fid', key)
  assert cached and np.array_equal(again, first)
  other, cached = fid.cached_real_features(_MeanColour(), images, 'pytorch_fid',
                                           {**key, 'weights': 'v'})
  assert not cached and np.array_equal(other, first)
