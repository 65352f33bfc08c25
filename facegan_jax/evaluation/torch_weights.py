"""Reads a PyTorch state_dict file (.pth) into NumPy arrays without PyTorch and without running
the file's pickle code.

A .pth file is a pickle, and unpickling can call any importable function. This reader's
unpickler resolves only the few names a state_dict of plain tensors needs (an OrderedDict, the
tensor and parameter rebuild functions, the float/half/long storage types), each to a local
stand-in that builds a NumPy array; any other name is refused. Both of torch.save's layouts are
read: the zip archive (torch >= 1.6) and the older sequence of pickles.
"""

import collections
import io
import pickle
import struct
import zipfile

import numpy as np

_DTYPES = {'FloatStorage': np.float32, 'DoubleStorage': np.float64, 'HalfStorage': np.float16,
           'LongStorage': np.int64, 'IntStorage': np.int32, 'ByteStorage': np.uint8,
           'BFloat16Storage': None}
_LEGACY_MAGIC = 0x1950a86a20f9469cfc6c


class UnsafeWeightsError(ValueError):
  """The file asks for something a plain state_dict of tensors never needs."""


class _Storage:
  def __init__(self, key, dtype, numel):
    self.key, self.dtype, self.numel = key, dtype, numel


class _Tensor:
  """A tensor whose storage is read after unpickling (the old layout stores it after)."""

  def __init__(self, storage, offset, size, stride):
    self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

  def array(self, storages):
    flat = storages[self.storage.key]
    itemsize = flat.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(
        flat[self.offset:], shape=tuple(self.size),
        strides=tuple(s * itemsize for s in self.stride))
    return view.copy()


def _rebuild_tensor(storage, offset, size, stride, *unused):
  del unused  # requires_grad, backward hooks, metadata
  return _Tensor(storage, offset, size, stride)


def _rebuild_parameter(data, *unused):
  del unused
  return data


class _StorageType:
  def __init__(self, name):
    if _DTYPES.get(name) is None:
      raise UnsafeWeightsError(f'unsupported tensor storage {name}')
    self.dtype = _DTYPES[name]


_ALLOWED = {
    ('collections', 'OrderedDict'): collections.OrderedDict,
    ('torch._utils', '_rebuild_tensor_v2'): _rebuild_tensor,
    ('torch._utils', '_rebuild_tensor'): _rebuild_tensor,
    ('torch._utils', '_rebuild_parameter'): _rebuild_parameter,
}


class _Unpickler(pickle.Unpickler):
  def find_class(self, module, name):
    if (module, name) in _ALLOWED:
      return _ALLOWED[module, name]
    if module == 'torch' and name in _DTYPES:
      return _StorageType(name)
    raise UnsafeWeightsError(f'refusing to load {module}.{name}: not part of a plain state_dict')

  def persistent_load(self, pid):
    if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == 'storage'
            and isinstance(pid[1], _StorageType)):
      raise UnsafeWeightsError(f'unexpected persistent id {pid!r}')
    return _Storage(str(pid[2]), pid[1].dtype, int(pid[4]))


def load(path):
  """{name: numpy array} from the state_dict file at `path`."""
  if zipfile.is_zipfile(path):
    with zipfile.ZipFile(path) as archive:
      pkl = next(n for n in archive.namelist() if n.endswith('data.pkl'))
      prefix = pkl[:-len('data.pkl')]
      state = _Unpickler(io.BytesIO(archive.read(pkl))).load()
      storages = {s.key: np.frombuffer(archive.read(f'{prefix}data/{s.key}'), s.dtype, s.numel)
                  for s in _storages(state)}
  else:
    state, storages = _load_legacy(path)
  if not isinstance(state, dict) or not all(isinstance(v, _Tensor) for v in state.values()):
    raise UnsafeWeightsError(f'{path} does not hold a state_dict of tensors')
  return {name: tensor.array(storages) for name, tensor in state.items()}


def _storages(state):
  found = {t.storage.key: t.storage for t in state.values() if isinstance(t, _Tensor)}
  return list(found.values())


def _load_legacy(path):
  """The pre-zip layout: magic number, protocol, system info, the state_dict, the sorted list
  of storage keys, then each storage as an int64 element count and its raw bytes."""
  with open(path, 'rb') as f:
    if _Unpickler(f).load() != _LEGACY_MAGIC:
      raise UnsafeWeightsError(f'{path} is neither a PyTorch zip archive nor a legacy .pth')
    _Unpickler(f).load()  # protocol version
    _Unpickler(f).load()  # system info
    state = _Unpickler(f).load()
    dtypes = {s.key: s.dtype for s in _storages(state)}
    storages = {}
    for key in _Unpickler(f).load():
      (count,) = struct.unpack('<q', f.read(8))
      dtype = np.dtype(dtypes[str(key)])
      storages[str(key)] = np.frombuffer(f.read(count * dtype.itemsize), dtype, count)
  return state, storages
