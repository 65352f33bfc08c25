"""The FID Inception port and its weight reader.

tests/data/*.pth were written by torch 2.13 (torch.save of the state_dict built in
`expected_state_dict`, in both of its layouts) so that the reader is tested without torch;
malicious.pth is state_dict_zip.pth with a data.pkl that calls os.system when unpickled.
The port itself is checked against tests/fid_inception_torch.py (pytorch-fid's network in plain
PyTorch) with random weights when torch is installed; it is not in requirements-test.txt (see
the README), so CI checks the port against GOLDEN instead: that reference's pool3 features of
two images with the seeded weights of `random_inception_weights`, written by
`python -m tests.test_inception --write_golden` with torch installed.
"""

import os
import sys

import jax
import numpy as np
import pytest
from flax import nnx
from PIL import Image

from facegan_jax.errors import UsageError
from facegan_jax.evaluation import fid
from facegan_jax.evaluation import inception
from facegan_jax.evaluation import torch_weights

DATA = os.path.join(os.path.dirname(__file__), 'data')
GOLDEN = os.path.join(DATA, 'fid_inception_golden.npz')
GOLDEN_COMMAND = 'python -m tests.test_inception --write_golden'


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


def random_inception_weights(seed=0):
  """Random FID Inception weights (He-scaled, so activations stay finite through the network)
  by pytorch-fid's names, as float32 numpy arrays.

  Drawn in sorted-name order from numpy alone, so GOLDEN's weights are rebuilt bit for bit
  without torch. numpy is pinned in requirements.txt, and GOLDEN records the version that drew
  them: numpy may change a Generator's stream between versions.
  """
  rng = np.random.default_rng(seed)
  arrays = {}
  for name, value in sorted(_state_dict_of(inception.FIDInception()).items()):
    if name.endswith('conv.weight'):
      fan_in = np.prod(value.shape[1:])
      value = rng.normal(size=value.shape) * np.sqrt(2 / fan_in)
    elif name.endswith('bn.weight') or name.endswith('bn.running_var'):
      value = rng.uniform(0.5, 1.5, value.shape)
    else:
      value = rng.normal(0, 0.1, value.shape)
    arrays[name] = value.astype(np.float32)
  return arrays


def random_inception_npz(path, seed=0):
  """Writes `random_inception_weights(seed)` and a random 1008-way classifier (`fc`, which
  the Inception Score reads) as an .npz; returns `path`."""
  rng = np.random.default_rng(seed + 1)
  fc = dict(weight=rng.normal(0, 0.05, (1008, 2048)), bias=rng.normal(0, 0.1, 1008))
  np.savez(path, **random_inception_weights(seed),
           **{f'fc.{k}': v.astype(np.float32) for k, v in fc.items()})
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


def _pytorch_fid_features(reference, images):
  """(input, pool3 features) of uint8 NHWC `images` by pytorch-fid: its own preprocessing
  (bilinear to 299, align_corners=False, then 2x - 1) and the reference network."""
  import torch
  nchw = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
  x = 2 * torch.nn.functional.interpolate(nchw, size=(299, 299), mode='bilinear',
                                          align_corners=False) - 1
  with torch.no_grad():
    return x.permute(0, 2, 3, 1).numpy(), reference(x).numpy()


def _port_features(model, images):
  """(input, pool3 features) of uint8 NHWC `images` by the port, resized as pytorch-fid does."""
  x = inception.resize(images, 'pytorch_fid')
  return np.asarray(x), np.asarray(jax.jit(lambda m, x: m(x))(model, x))


def _assert_features_close(got, want):
  assert got.shape == want.shape == (len(want), 2048)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_port_matches_pytorch_fid_network_with_random_weights(tmp_path):
  torch = pytest.importorskip('torch', reason='torch (a test-only extra) is not installed')
  from tests import fid_inception_torch

  reference = fid_inception_torch.randomized(seed=0)
  path = str(tmp_path / 'random_inception.pth')
  torch.save(reference.state_dict(), path)
  model = inception.FIDInception()
  inception.load_state_dict(model, torch_weights.load(path))  # through the safe reader

  images = np.random.default_rng(1).integers(0, 256, (2, 64, 64, 3), np.uint8)
  x_ref, want = _pytorch_fid_features(reference, images)
  x, got = _port_features(model, images)
  np.testing.assert_allclose(x, x_ref, atol=1e-5)
  _assert_features_close(got, want)


def golden_record(seed=0):
  """GOLDEN's contents: the reference's features of two seeded images with the weights of
  `random_inception_weights(seed)`, and what made them. Needs torch."""
  import torch
  from tests import fid_inception_torch

  reference = fid_inception_torch.FIDInceptionReference().eval()
  missing, unexpected = reference.load_state_dict(
      {k: torch.from_numpy(v) for k, v in random_inception_weights(seed).items()}, strict=False)
  assert not unexpected and all(k.startswith('fc.') or k.endswith('num_batches_tracked')
                                for k in missing), (missing, unexpected)
  # Small images keep the file small; the network sees them resized to 299 either way.
  images = np.random.default_rng(1).integers(0, 256, (2, 32, 32, 3), np.uint8)
  _, features = _pytorch_fid_features(reference, images)
  return dict(weight_seed=np.int64(seed), images=images, features=features.astype(np.float32),
              torch_version=np.str_(torch.__version__), numpy_version=np.str_(np.__version__),
              command=np.str_(GOLDEN_COMMAND))


def _golden():
  with np.load(GOLDEN, allow_pickle=False) as f:
    return dict(f)


def test_port_matches_golden_pytorch_fid_features():
  """The torch test's check without torch: the port against the reference's stored features."""
  golden = _golden()
  model = inception.FIDInception()
  inception.load_state_dict(model, random_inception_weights(int(golden['weight_seed'])))
  _, got = _port_features(model, golden['images'])
  # Measured 2026-12-01 on this 2-core CPU: max abs difference 1.9e-5 (largest feature 32.4),
  # max relative 3.7e-5 on features above 1e-3 of the largest. A BatchNorm eps 10% off, the
  # average pools counting their padding, or a bicubic resize fails it.
  _assert_features_close(got, golden['features'])


def test_golden_file_is_what_the_torch_reference_computes():
  pytest.importorskip('torch', reason='torch (a test-only extra) is not installed')
  golden, fresh = _golden(), golden_record()
  assert np.array_equal(golden['images'], fresh['images'])
  np.testing.assert_allclose(golden['features'], fresh['features'], rtol=1e-4,
                             atol=1e-4 * np.abs(fresh['features']).max(),
                             err_msg=f'stale {GOLDEN}: rerun {GOLDEN_COMMAND}')


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


def test_the_real_features_key_follows_the_images():
  """The same dataset read in grey (--channels=1) or at another size is other images: its
  Inception features are computed afresh, not taken from the RGB run's cache."""
  rgb = np.random.default_rng(0).integers(0, 256, (6, 16, 16, 3), np.uint8)
  grey = np.repeat(rgb.mean(axis=-1, keepdims=True).astype(np.uint8), 3, axis=-1)
  key = fid.real_features_key(rgb, 'w', 'pytorch_fid')
  assert key == fid.real_features_key(rgb.copy(), 'w', 'pytorch_fid')
  for other in (fid.real_features_key(grey, 'w', 'pytorch_fid'),
                fid.real_features_key(rgb[:, ::2, ::2], 'w', 'pytorch_fid'),
                fid.real_features_key(rgb, 'v', 'pytorch_fid'),
                fid.real_features_key(rgb, 'w', 'clean_fid')):
    assert other != key


if __name__ == '__main__':
  if sys.argv[1:] != ['--write_golden']:
    sys.exit(f'usage: {GOLDEN_COMMAND} (needs torch)')
  np.savez_compressed(GOLDEN, **golden_record())
  print(f'wrote {GOLDEN} ({os.path.getsize(GOLDEN)} bytes)')


def test_load_network_reads_the_classifier_the_inception_score_needs(tmp_path):
  path = random_inception_npz(str(tmp_path / 'with_fc.npz'))
  _, (weight, bias), digest = fid.load_network(path)
  with np.load(path) as f:
    np.testing.assert_array_equal(weight, f['fc.weight'])
    np.testing.assert_array_equal(bias, f['fc.bias'])
  assert weight.dtype == np.float64 and len(digest) == 64
  np.savez(tmp_path / 'no_fc.npz', **random_inception_weights())
  with pytest.raises(UsageError, match=r"not the FID Inception weights \(they lack 'fc.weight'\)"):
    fid.load_network(str(tmp_path / 'no_fc.npz'))
