"""folder:PATH trees as users' disks hold them: names that are not UTF-8, directory symlinks
(loops too) and files nobody may read. Sources in general are in test_sources.py."""

import builtins
import errno
import io
import logging
import os

import numpy as np
import pytest
from PIL import Image

from facegan_jax.config import Config
from facegan_jax.data import images, sources
from facegan_jax.errors import UsageError

# Solid colours far apart: each decoded image says which file it came from.
COLORS = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30)]
NOT_UTF8 = b'bad\xffutf8.png'  # 0xff is no UTF-8 byte: Python holds it as '\udcff'


def _png(color):
  buf = io.BytesIO()
  Image.new('RGB', (12, 12), color).save(buf, 'PNG')
  return buf.getvalue()


def _write(root, files):
  """Writes {name (str or bytes): contents} under `root`; returns it."""
  for name, contents in files.items():
    path = os.path.join(os.fsencode(root), os.fsencode(name))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'wb') as f:
      f.write(contents)
  return root


def _config(tmp_path, root, **kwargs):
  return Config(dataset=f'folder:{root}', data_dir=str(tmp_path / 'data'), resolution=8,
                channels=3, **kwargs)


def _colors(faces):
  return [tuple(int(c) for c in face.reshape(-1, 3).mean(axis=0).round()) for face in faces]


def _usage_error(fn, *args):
  with pytest.raises(UsageError) as info:
    fn(*args)
  message = str(info.value)
  assert '\n' not in message
  message.encode('utf-8')  # prints on any console or log, strict UTF-8 ones too
  return message


# Names that are not UTF-8.

def test_a_file_name_that_is_not_utf8_is_read_like_any_other(tmp_path):
  root = _write(tmp_path / 'faces', {'a.png': _png(COLORS[0]), NOT_UTF8: _png(COLORS[1]),
                                     'c.png': _png(COLORS[2])})
  config = _config(tmp_path, root)
  assert _colors(sources.load_images(config)) == COLORS[:3]  # in name order
  assert sources.version(config).startswith('files-')


def test_a_bad_file_whose_name_is_not_utf8_is_named_printably(tmp_path, caplog):
  root = _write(tmp_path / 'faces', {'a.png': _png(COLORS[0]), NOT_UTF8: b'not an image'})
  message = _usage_error(sources.load_images, _config(tmp_path, root, max_bad_fraction=0))
  assert 'bad\\xffutf8.png: not a readable image' in message
  with caplog.at_level(logging.WARNING):
    assert _colors(sources.load_images(_config(tmp_path, root, max_bad_fraction=0.5))) == [
        COLORS[0]]
  skipped = [r.getMessage() for r in caplog.records if 'skipped 1 unreadable' in r.getMessage()]
  assert len(skipped) == 1 and 'bad\\xffutf8.png' in skipped[0]
  skipped[0].encode('utf-8')


def test_a_class_folder_whose_name_is_not_utf8_is_named_printably(tmp_path):
  root = _write(tmp_path / 'faces', {b'cat\xff/a.png': _png(COLORS[0]),
                                     b'dog/b.png': _png(COLORS[1])})
  labels, names = sources.load_labels(_config(tmp_path, root))
  assert names == ['cat\\xff', 'dog']
  np.testing.assert_array_equal(labels, [0, 1])


# Directory symlinks.

def test_a_folder_holding_a_symlink_to_a_directory_of_images(tmp_path):
  real = _write(tmp_path / 'elsewhere', {'a.png': _png(COLORS[0]), 'b.png': _png(COLORS[1])})
  root = tmp_path / 'faces'
  root.mkdir()
  (root / 'linked').symlink_to(real, target_is_directory=True)
  assert _colors(sources.load_images(_config(tmp_path, root))) == COLORS[:2]


def test_a_symlink_loop_ends_and_each_image_is_listed_once(tmp_path):
  root = _write(tmp_path / 'faces', {'real/a.png': _png(COLORS[0]),
                                     'real/deeper/b.png': _png(COLORS[1])})
  # One loop only: unguarded, the walk would go round it until the OS refuses (some 40 times);
  # two loops would branch at each turn, and a test of an unguarded walk would never end.
  (root / 'real' / 'deeper' / 'up').symlink_to(root, target_is_directory=True)
  assert [name for name, _ in images.list_images(str(root))] == [
      os.path.join('real', 'a.png'), os.path.join('real', 'deeper', 'b.png')]


def test_a_directory_reached_two_ways_is_listed_once(tmp_path):
  root = _write(tmp_path / 'faces', {'real/a.png': _png(COLORS[0])})
  (root / 'also').symlink_to(root / 'real', target_is_directory=True)
  # By the first way in name order.
  assert [name for name, _ in images.list_images(str(root))] == [os.path.join('also', 'a.png')]


# Files nobody may read.

@pytest.fixture
def unreadable(tmp_path, monkeypatch):
  """A folder of three images, the middle one chmod 000. As root, where chmod 000 does not
  stop reading, opening it raises the PermissionError that any other user gets."""
  root = _write(tmp_path / 'faces', {f'{name}.png': _png(color)
                                     for name, color in zip('abc', COLORS)})
  path = str(root / 'b.png')
  os.chmod(path, 0)
  if os.access(path, os.R_OK):
    real_open = builtins.open

    def open_as_a_user(file, *args, **kwargs):
      if not isinstance(file, int) and os.fsdecode(file) == path:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)
      return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, 'open', open_as_a_user)
  yield root
  os.chmod(path, 0o644)


def test_an_unreadable_file_is_skipped_as_a_bad_file(tmp_path, unreadable, caplog):
  with caplog.at_level(logging.WARNING):
    faces = sources.load_images(_config(tmp_path, unreadable, max_bad_fraction=0.5))
  assert _colors(faces) == [COLORS[0], COLORS[2]]
  assert any('b.png: cannot read: permission denied' in r.getMessage() for r in caplog.records)


def test_too_many_unreadable_files_is_a_read_error(tmp_path, unreadable):
  message = _usage_error(sources.load_images, _config(tmp_path, unreadable, max_bad_fraction=0))
  assert message.startswith('1 of 3 files are not readable images')
  assert 'b.png: cannot read: permission denied' in message
  assert '--max_bad_fraction' in message
