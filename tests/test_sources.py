"""Dataset sources end to end: celeba_small, folder:PATH and tfds:NAME through load_images.

Every input is made here under tmp_path (PIL images, zipfile) or mocked (TFDS's mock data),
and host lookups are faked, so nothing is downloaded even on a machine with internet.
Decoding details (modes, bad files, hostile zips) are in test_images.py.
"""

import io
import os
import socket
import subprocess
import sys
import tempfile
import zipfile

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from facegan_jax.config import Config
from facegan_jax.data import celeba_small_builder, images, preprocess, sources
from facegan_jax.data import synthetic_faces, synthetic_faces_builder, tfds_prepare
from facegan_jax.errors import UsageError
from tests import conftest

# Twelve colours, 20 levels apart in red: a solid JPEG keeps its colour within a few levels,
# so each decoded image says which file it came from.
COLORS = np.array([(20 * i, 255 - 20 * i, (40 + 53 * i) % 256) for i in range(12)])
CELEBA_DIR = 'processed_celeba_small/celeba'
BAD_NAME = '000007.jpg'  # between good files, so skipping it must keep the others' order


def _encode(color, size=(64, 64), fmt='JPEG'):
  buf = io.BytesIO()
  Image.new('RGB', size, tuple(int(c) for c in color)).save(buf, fmt)
  return buf.getvalue()


def _celeba_files():
  """{name: bytes} like the Udacity zip: 12 faces, a corrupt one and a macOS resource file."""
  names = [f'{i:06d}.jpg' for i in range(1, 14) if f'{i:06d}.jpg' != BAD_NAME]
  files = {f'{CELEBA_DIR}/{name}': _encode(color) for name, color in zip(names, COLORS)}
  files[f'{CELEBA_DIR}/{BAD_NAME}'] = b'\xff\xd8\xff\xe0 truncated JPEG'
  files[f'__MACOSX/{CELEBA_DIR}/._000001.jpg'] = b'\x00\x05\x16\x07 AppleDouble'
  return files


def _write_zip(path, files):
  path.parent.mkdir(parents=True, exist_ok=True)
  with zipfile.ZipFile(path, 'w') as archive:
    for name, contents in files.items():
      archive.writestr(name, contents)
  return path


def _write_tree(root, files):
  for name, contents in files.items():
    (root / name).parent.mkdir(parents=True, exist_ok=True)
    (root / name).write_bytes(contents)
  return root


def _config(tmp_path, dataset, **kwargs):
  return Config(**{'dataset': dataset, 'data_dir': str(tmp_path / 'data'), 'resolution': 32,
                   'channels': 3, **kwargs})


def _usage_error(fn, *args):
  """The one-line message of the UsageError that fn raises."""
  with pytest.raises(UsageError) as info:
    fn(*args)
  assert '\n' not in str(info.value)
  return str(info.value)


def _assert_colors(batch, colors, tolerance=8):
  """Each image of `batch` is a solid colour close to the matching row of `colors`."""
  assert len(batch) == len(colors)
  means = batch.reshape(len(batch), -1, batch.shape[-1]).astype(float).mean(axis=1)
  np.testing.assert_allclose(means, colors, atol=tolerance)


@pytest.fixture
def offline(monkeypatch):
  """No host resolves, as on an offline machine; returns the hosts looked up."""
  lookups = []

  def getaddrinfo(host, *args, **kwargs):
    lookups.append(host)
    raise socket.gaierror(socket.EAI_NONAME, 'Name or service not known')

  monkeypatch.setattr(socket, 'getaddrinfo', getaddrinfo)
  return lookups


@pytest.fixture
def celeba_zip(tmp_path):
  """The manual directory, holding a stand-in processed-celeba-small.zip."""
  manual = tmp_path / 'manual'
  _write_zip(manual / 'processed-celeba-small.zip', _celeba_files())
  return manual


def _celeba_config(tmp_path, manual, **kwargs):
  kwargs = {'max_bad_fraction': 0.1, **kwargs}  # 1 bad file of 13
  return _config(tmp_path, 'celeba_small', data_manual_dir=str(manual), **kwargs)


# celeba_small: the Udacity zip or its folder, from the manual directory.

@pytest.mark.parametrize('resolution', [64, 32])
def test_celeba_small_from_the_manual_zip(tmp_path, celeba_zip, offline, resolution):
  faces = sources.load_images(_celeba_config(tmp_path, celeba_zip, resolution=resolution))
  assert faces.dtype == np.uint8
  assert faces.shape == (12, resolution, resolution, 3)  # 13 files, one corrupt
  _assert_colors(faces, COLORS)  # in file-name order
  assert not offline  # a manual copy needs no host lookup


def test_celeba_small_reuses_the_prepared_dataset(tmp_path, celeba_zip, offline):
  first = sources.load_images(_celeba_config(tmp_path, celeba_zip))
  os.remove(celeba_zip / 'processed-celeba-small.zip')
  builder_dir = tmp_path / 'data' / 'celeba_small' / '1.0.0'
  for cache in builder_dir.glob('facegan-*.npy'):  # read the TFDS records again
    cache.unlink()
  again = sources.load_images(_celeba_config(tmp_path, celeba_zip))
  np.testing.assert_array_equal(again, first)
  small = sources.load_images(_celeba_config(tmp_path, celeba_zip, resolution=16))
  assert small.shape == (12, 16, 16, 3)
  _assert_colors(small, COLORS)
  assert not offline


def test_celeba_small_lists_skipped_files_in_its_metadata(tmp_path, celeba_zip, offline):
  sources.load_images(_celeba_config(tmp_path, celeba_zip))
  builder = celeba_small_builder.CelebaSmall(data_dir=str(tmp_path / 'data'))
  assert builder.is_prepared()
  skipped = builder.info.metadata['skipped']
  assert len(skipped) == 1  # not the __MACOSX resource file: it is not listed as an image
  assert skipped[0].startswith(f'{CELEBA_DIR}/{BAD_NAME}: not a readable image')


def test_celeba_small_too_many_bad_files_names_them(tmp_path, celeba_zip, offline):
  config = _celeba_config(tmp_path, celeba_zip, max_bad_fraction=0)
  message = _usage_error(sources.load_images, config)
  assert message.startswith('1 of 13 files are not readable images')
  assert f'{CELEBA_DIR}/{BAD_NAME}' in message
  assert not celeba_small_builder.CelebaSmall(data_dir=config.data_dir).is_prepared()


def test_celeba_small_from_the_extracted_folder_in_the_default_manual_dir(tmp_path, offline):
  files = {name.replace('__MACOSX/', ''): contents for name, contents in _celeba_files().items()}
  _write_tree(tmp_path / 'data' / 'downloads' / 'manual', files)
  faces = sources.load_images(_config(tmp_path, 'celeba_small', max_bad_fraction=0.1))
  assert faces.shape == (12, 32, 32, 3)
  _assert_colors(faces, COLORS)
  assert not offline


def test_celeba_small_offline_without_a_manual_copy_says_where_to_put_it(tmp_path, offline,
                                                                         monkeypatch):
  manual = tmp_path / 'manual'
  manual.mkdir()
  # Offline, TFDS would retry its download for minutes: the error must come before any.
  downloads = []
  monkeypatch.setattr(tfds.download.DownloadManager, 'download',
                      lambda self, url: downloads.append(url))
  monkeypatch.setattr(celeba_small_builder.CelebaSmall, 'download_and_prepare',
                      lambda self, **kwargs: downloads.append('download_and_prepare'))
  message = _usage_error(sources.load_images, _celeba_config(tmp_path, manual))
  assert downloads == []  # no download tried, so none retried
  assert offline == ['s3.amazonaws.com']  # one lookup, no retries
  assert str(manual) in message
  assert '--data_manual_dir' in message
  assert 'processed-celeba-small.zip' in message


def test_celeba_small_failed_download_says_where_to_put_the_zip(tmp_path, monkeypatch):
  monkeypatch.setattr(socket, 'getaddrinfo', lambda *args, **kwargs: [])  # "resolves"

  def download(self, url):
    raise ConnectionError(f'no route to {url}')

  monkeypatch.setattr(tfds.download.DownloadManager, 'download', download)
  config = _config(tmp_path, 'celeba_small')
  message = _usage_error(sources.load_images, config)
  assert message.startswith('could not download processed-celeba-small.zip (ConnectionError)')
  assert os.path.join(config.data_dir, 'downloads', 'manual') in message


# folder:PATH, a directory tree or a zip.

FOLDER_COLORS = COLORS[:5]


def _folder_files(colors=FOLDER_COLORS):
  """PNGs of varied sizes in nested folders, named so that their order is the colours'."""
  return {f'{"ab"[i // 3]}/face{i}.png': _encode(color, (24 + 8 * i, 40), 'PNG')
          for i, color in enumerate(colors)}


@pytest.fixture(params=['dir', 'zip'])
def folder(request, tmp_path):
  if request.param == 'zip':
    return _write_zip(tmp_path / 'faces.zip', _folder_files())
  return _write_tree(tmp_path / 'faces', _folder_files())


def test_folder_shapes_and_order(tmp_path, folder):
  faces = sources.load_images(_config(tmp_path, f'folder:{folder}', resolution=16))
  assert faces.dtype == np.uint8
  assert faces.shape == (5, 16, 16, 3)
  _assert_colors(faces, FOLDER_COLORS, tolerance=1)  # PNG is lossless


def test_folder_in_grayscale(tmp_path, folder):
  faces = sources.load_images(_config(tmp_path, f'folder:{folder}', resolution=8, channels=1))
  assert faces.shape == (5, 8, 8, 1)
  luma = FOLDER_COLORS @ np.array([0.299, 0.587, 0.114])  # PIL's RGB -> L
  _assert_colors(faces, luma[:, None], tolerance=1)


def test_folder_second_load_reads_the_cache(tmp_path, folder, monkeypatch):
  config = _config(tmp_path, f'folder:{folder}')
  first = sources.load_images(config)

  def decode(contents):
    raise AssertionError('decoded again instead of reading the cache')

  monkeypatch.setattr(images, 'decode', decode)
  np.testing.assert_array_equal(sources.load_images(config), first)
  cached = sorted(p.name for p in (tmp_path / 'data' / 'facegan_folders').glob('*.npy'))
  assert len(cached) == 2 and cached[0] == cached[1][:-4] + '-labels.npy'  # labels, images


def test_folder_class_subfolders_are_labels(tmp_path, folder):
  config = _config(tmp_path, f'folder:{folder}', resolution=16)
  labels, names = sources.load_labels(config)
  assert names == ['a', 'b']
  np.testing.assert_array_equal(labels, [0, 0, 0, 1, 1])  # in load_images' order
  assert len(sources.load_images(config)) == len(labels)


def test_folder_labels_skip_what_the_images_skip(tmp_path):
  files = {f'{digit}/{i}.png': _encode(COLORS[3 * digit + i], fmt='PNG')
           for digit in range(3) for i in range(3)}
  files['1/1.png'] = b'not an image'
  # A zip holding one top folder: the classes are the folders inside it.
  path = _write_zip(tmp_path / 'digits.zip', {f'digits/{k}': v for k, v in files.items()})
  config = _config(tmp_path, f'folder:{path}', resolution=16, max_bad_fraction=0.2)
  faces = sources.load_images(config)
  labels, names = sources.load_labels(config)
  assert names == ['0', '1', '2']
  np.testing.assert_array_equal(labels, [0, 0, 0, 1, 1, 2, 2, 2])
  _assert_colors(faces, COLORS[[0, 1, 2, 3, 5, 6, 7, 8]], tolerance=1)


@pytest.mark.parametrize('names', [['x.png', 'y.png'], ['a/x.png', 'a/y.png'],
                                   ['a/x.png', 'y.png']])
def test_folder_without_class_subfolders_has_no_labels(tmp_path, names):
  root = _write_tree(tmp_path / 'faces', {name: _encode(COLORS[0], fmt='PNG') for name in names})
  assert sources.load_labels(_config(tmp_path, f'folder:{root}')) is None


def test_folder_cache_follows_the_contents(tmp_path, folder):
  config = _config(tmp_path, f'folder:{folder}')
  assert len(sources.load_images(config)) == 5
  more = _folder_files(COLORS[:6])
  if folder.suffix == '.zip':
    _write_zip(folder, more)
  else:
    _write_tree(folder, {name: more[name] for name in more.keys() - _folder_files().keys()})
  faces = sources.load_images(config)
  assert len(faces) == 6
  _assert_colors(faces, COLORS[:6], tolerance=1)


def test_folder_path_under_home(tmp_path, monkeypatch):
  monkeypatch.setenv('HOME', str(tmp_path))
  _write_tree(tmp_path / 'faces', _folder_files())
  faces = sources.load_images(_config(tmp_path, 'folder:~/faces', resolution=16))
  assert faces.shape == (5, 16, 16, 3)


# tfds:NAME[:SPLIT], read through TFDS's mock data (10 random examples per split).

@pytest.fixture
def mock_tfds():
  with tfds.testing.mock_data(num_examples=10, policy=tfds.testing.MockPolicy.USE_CODE):
    yield


def _mock_images(name, split='train'):
  """The mocked dataset's images as TFDS serves them (call inside `mock_tfds`)."""
  source = tfds.builder(name).as_data_source(split)
  return np.stack([np.asarray(source[i]['image']) for i in range(len(source))])


def test_tfds_mnist_as_stored(tmp_path, mock_tfds):
  digits = sources.load_images(_config(tmp_path, 'tfds:mnist', resolution=28, channels=1))
  assert digits.dtype == np.uint8
  assert digits.shape == (10, 28, 28, 1)
  np.testing.assert_array_equal(digits, _mock_images('mnist'))


def test_tfds_label_feature(tmp_path, mock_tfds):
  config = _config(tmp_path, 'tfds:mnist', resolution=28, channels=1)
  labels, names = sources.load_labels(config)
  source = tfds.builder('mnist').as_data_source('train')
  np.testing.assert_array_equal(labels, [source[i]['label'] for i in range(len(source))])
  assert names == [str(i) for i in range(10)] and labels.dtype == np.int32
  assert len(labels) == len(sources.load_images(config))
  assert sources.load_labels(_config(tmp_path, 'tfds:celeb_a')) is None  # no label feature


def test_tfds_celeb_a_uses_the_centre_crop(tmp_path, mock_tfds):
  faces = sources.load_images(_config(tmp_path, 'tfds:celeb_a'))
  raw = _mock_images('celeb_a')
  assert raw.shape == (10, 218, 178, 3)
  assert faces.shape == (10, 32, 32, 3)
  np.testing.assert_array_equal(
      faces, preprocess.to_model_images(raw, 32, 3, crop=tfds_prepare.CELEB_A_CROP))
  assert not np.array_equal(faces, preprocess.to_model_images(raw, 32, 3))


def test_tfds_split_in_the_name_wins(tmp_path, mock_tfds):
  config = _config(tmp_path, 'tfds:mnist:test', resolution=28, channels=1)
  assert sources.load_images(config, split='train').shape == (10, 28, 28, 1)
  cached = (tmp_path / 'data' / 'facegan_tfds' / 'mnist').glob('*/facegan-*.npy')
  assert [path.name for path in cached] == ['facegan-test.npy']


@pytest.mark.parametrize('name, reason', [
    ('no_such_dataset', "TFDS has no dataset 'no_such_dataset'"),
    ('mnist/no_such_config', 'BuilderConfig no_such_config not found')])
def test_tfds_unknown_name(tmp_path, mock_tfds, name, reason):
  message = _usage_error(sources.load_images, _config(tmp_path, f'tfds:{name}'))
  assert message.startswith(f'--dataset=tfds:{name}: {reason}')


def test_tfds_download_that_returned_an_html_page(tmp_path, monkeypatch):
  # What Google Drive serves for celeb_a's files once their download quota is used up.
  def download_and_prepare(self, **kwargs):
    downloads = tmp_path / 'data' / 'downloads'
    downloads.mkdir(parents=True)
    (downloads / 'ucexport_id_0B7EVK8r0v71pZjFTYXZWM3FlRnM').write_text(
        '<!DOCTYPE html><html><title>Google Drive - Quota exceeded</title></html>')
    raise ValueError('File is not a zip file')

  monkeypatch.setattr(tfds.core.DatasetBuilder, 'download_and_prepare', download_and_prepare)
  message = _usage_error(sources.load_images, _config(tmp_path, 'tfds:celeb_a'))
  assert message.startswith('tfds:celeb_a: the download returned an HTML page instead of the '
                            'archive')
  assert 'quota' in message and str(tmp_path / 'data' / 'downloads' / 'manual') in message


def test_tfds_preparation_that_needs_tensorflow(tmp_path, monkeypatch):
  def download_and_prepare(self, **kwargs):
    raise ModuleNotFoundError("No module named 'tensorflow'", name='tensorflow')

  monkeypatch.setattr(tfds.core.DatasetBuilder, 'download_and_prepare', download_and_prepare)
  message = _usage_error(sources.load_images, _config(tmp_path, 'tfds:mnist', resolution=28,
                                                   channels=1))
  assert message.startswith('preparing tfds:mnist needs tensorflow once (pip install tensorflow)')


# Two runs at once on one fresh --data_dir.

# One run of load_images in its own process, at a resolution, with its steps told on stdout
# and held until the test writes a line to its stdin: once its TFDS builder is built, before
# it prepares the dataset, and when it finds the preparation lock held by another.
_RUN_PREPARING = """
import fcntl, sys
import numpy as np
from facegan_jax.config import Config
from facegan_jax.data import sources, synthetic_faces_builder

data_dir, resolution, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
builder_class = synthetic_faces_builder.SyntheticFaces
small = builder_class.builder_configs['small']
small.num_train, small.num_test = 24, 4  # a second's rendering, not the full small set
init, prepare, flock = builder_class.__init__, builder_class.download_and_prepare, fcntl.flock

def tell_and_hold(step):
  print(step, file=sys.__stdout__, flush=True)  # sys.stdout is redirected while TFDS prepares
  sys.stdin.readline()

def built(self, *args, **kwargs):
  init(self, *args, **kwargs)
  tell_and_hold('built')

def prepares(self, *args, **kwargs):
  tell_and_hold('prepares')
  prepare(self, *args, **kwargs)

def flock_telling(fd, operation):
  try:
    flock(fd, operation | fcntl.LOCK_NB)
  except BlockingIOError:
    print('waits for the lock', file=sys.__stdout__, flush=True)
    flock(fd, operation)

builder_class.__init__, builder_class.download_and_prepare = built, prepares
fcntl.flock = flock_telling
np.save(out, sources.load_images(Config(dataset='synthetic_faces/small', data_dir=data_dir,
                                        resolution=resolution)))
"""


@pytest.mark.parametrize('second_looks', ['while the first prepares', 'after the first prepared'])
def test_two_runs_preparing_one_dataset_at_once_read_the_same_images(tmp_path, second_looks):
  deadline = conftest.Deadline(90)
  # At two resolutions: the second run cannot take the first's resized images from the
  # cache, and reads the prepared records.
  resolutions = (16, 8)
  env = {**os.environ, 'PYTHONPATH': conftest.ROOT, 'JAX_PLATFORMS': 'cpu'}
  runs = []
  for i, resolution in enumerate(resolutions):
    log = tmp_path / f'run{i}.log'
    with open(log, 'wb') as f:  # the output goes to a file: no pipe to fill up
      process = subprocess.Popen(
          [sys.executable, '-c', _RUN_PREPARING, str(tmp_path / 'data'), str(resolution),
           str(tmp_path / f'images{i}.npy')],
          env=env, cwd=conftest.ROOT, stdin=subprocess.PIPE, stdout=f, stderr=f)
    runs.append(conftest.Run(process, log))
  first, second = runs

  def step(run, line):
    assert run.wait_for_line(f'^{line}$', deadline), run.tail()

  def go_on(run):
    run.process.stdin.write(b'\n')
    run.process.stdin.flush()

  try:
    # Both build their TFDS builder, finding the dataset unprepared, as two runs started
    # together do; then the first prepares it.
    step(first, 'built')
    step(second, 'built')
    go_on(first)
    step(first, 'prepares')
    if second_looks == 'while the first prepares':
      go_on(second)
      step(second, 'waits for the lock')
      go_on(first)
    else:
      go_on(first)
      assert first.wait(deadline) == 0, first.tail()
      go_on(second)
    for run in runs:
      assert run.wait(deadline) == 0, run.tail()
  finally:
    for run in runs:
      run.kill()
      run.process.stdin.close()
  faces = [synthetic_faces.render_face(synthetic_faces_builder.SEED, i,
                                       synthetic_faces_builder.IMAGE_SIZE)[0] for i in range(24)]
  for i, resolution in enumerate(resolutions):
    np.testing.assert_array_equal(np.load(tmp_path / f'images{i}.npy'),
                                  preprocess.to_model_images(faces, resolution, 3))


# Names.

@pytest.mark.parametrize('name', ['synthetic_faces', 'synthetic_faces/small',
                                  'synthetic_faces/full', 'celeba_small', 'tfds:x',
                                  'tfds:celeb_a:test', 'folder:x', 'folder:/a/b.zip'])
def test_check_dataset_accepts(name):
  sources.check_dataset(name)


@pytest.mark.parametrize('name', ['imagenet', 'tfds:', 'folder:', 'celeba_small/x',
                                  'synthetic_faces/huge', 'synthetic_faces:small'])
def test_check_dataset_rejects(name):
  message = _usage_error(sources.check_dataset, name)
  assert message.startswith(f'unknown --dataset={name}; available: synthetic_faces, ')


def test_building_an_unprepared_dataset_leaves_no_temporary_directory(tmp_path, monkeypatch):
  """TFDS makes a temporary directory for every builder of a dataset not yet prepared and
  leaves it (a test session left hundreds in /tmp); ours are removed."""
  scratch = tmp_path / 'tmp'
  scratch.mkdir()
  monkeypatch.setattr(tempfile, 'tempdir', str(scratch))
  monkeypatch.setattr(tfds_prepare, '_prepare', lambda builder, **kwargs: None)  # no rendering
  builder = tfds_prepare.synthetic_faces_builder('synthetic_faces/small', str(tmp_path / 'data'))
  assert not tfds_prepare._is_prepared(builder)
  assert os.listdir(scratch) == [] and tempfile.gettempdir() == str(scratch)
