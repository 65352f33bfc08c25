"""Image folders and zips: bad, unusual and hostile inputs give images, skips or a UsageError.

Every input is written under pytest's tmp_path with PIL, NumPy and zipfile.
"""

import io
import os
import zipfile

import numpy as np
import pytest
from PIL import Image

from facegan_jax.data import images
from facegan_jax.errors import UsageError

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def _encode(image, fmt='PNG', **kwargs):
  """A PIL image (or uint8 array) -> the bytes of an image file in `fmt`."""
  if isinstance(image, np.ndarray):
    image = Image.fromarray(image)
  buf = io.BytesIO()
  image.save(buf, fmt, **kwargs)
  return buf.getvalue()


def _write(path, data):
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_bytes(data)
  return path


def _solid(color, size=(8, 8), fmt='PNG'):
  return _encode(Image.new('RGB', size, color), fmt)


def _zip(path, entries, compression=zipfile.ZIP_STORED):
  """Writes {name: bytes} to a zip at `path`, names kept exactly (no sanitizing)."""
  with zipfile.ZipFile(path, 'w', compression) as archive:
    for name, data in entries.items():
      archive.writestr(name, data)
  return path


def _names(files):
  return [name for name, _ in files]


def _usage_error(fn, *args, **kwargs):
  """The message of the UsageError that fn raises; it must be one line."""
  with pytest.raises(UsageError) as info:
    fn(*args, **kwargs)
  message = str(info.value)
  assert '\n' not in message
  return message


# Listing: missing, empty and image-less paths.

def test_empty_folder(tmp_path):
  message = _usage_error(images.list_images, str(tmp_path))
  assert message == f'no images (.jpg, .jpeg, .png, .webp, .bmp) in {tmp_path}; it is empty'


def test_folder_without_images(tmp_path):
  (tmp_path / 'readme.txt').write_text('hello')
  (tmp_path / 'labels.csv').write_text('a,b')
  _write(tmp_path / 'sub' / 'anim.gif', b'GIF89a')  # .gif is not one of SUFFIXES
  message = _usage_error(images.list_images, str(tmp_path))
  assert 'no images' in message and '3 other file(s)' in message


def test_missing_path(tmp_path):
  path = str(tmp_path / 'no_such_folder')
  message = _usage_error(images.list_images, path)
  assert path in message and 'does not exist' in message


def test_plain_file_is_neither_folder_nor_zip(tmp_path):
  path = _write(tmp_path / 'face.jpg', _solid(RED, fmt='JPEG'))
  assert 'neither a directory nor a .zip' in _usage_error(images.list_images, str(path))


# Bad files: skipped and counted, or too many of them.

def _folder_with_bad_files(root, good=3):
  for i in range(good):
    _write(root / f'good{i}.png', _solid(GREEN))
  jpeg = _solid(RED, size=(64, 64), fmt='JPEG')
  _write(root / 'empty.jpg', b'')
  _write(root / 'truncated.jpg', jpeg[:len(jpeg) // 2])
  _write(root / 'page.jpg', b'<!DOCTYPE html>\n<html><body>Quota exceeded</body></html>')
  return str(root)


def test_bad_files_are_skipped_with_reasons(tmp_path):
  files = images.list_images(_folder_with_bad_files(tmp_path))
  out, bad = images.prepare(files, 8, 3, max_bad_fraction=0.9)
  assert out.shape == (3, 8, 8, 3) and out.dtype == np.uint8
  assert np.all(out == GREEN)
  reasons = dict(bad)
  assert sorted(reasons) == ['empty.jpg', 'page.jpg', 'truncated.jpg']
  assert reasons['empty.jpg'] == 'empty file'
  assert 'HTML' in reasons['page.jpg']
  assert reasons['truncated.jpg'].startswith('not a readable image')


def test_too_many_bad_files_is_a_usage_error(tmp_path):
  files = images.list_images(_folder_with_bad_files(tmp_path))
  message = _usage_error(images.prepare, files, 8, 3)
  assert '3 of 6 files are not readable images' in message and '1%' in message
  for name in ('empty.jpg', 'page.jpg', 'truncated.jpg'):
    assert name in message
  assert '--max_bad_fraction' in message  # the way to go on deliberately


def test_a_file_pil_cannot_identify_says_so_without_an_object_address(tmp_path):
  _write(tmp_path / 'noise.png', b'not an image at all, just text')
  [(name, why)] = images.prepare(images.list_images(str(tmp_path)) + [
      ('good.png', lambda: _solid(GREEN))], 8, 3, max_bad_fraction=0.9)[1]
  assert name == 'noise.png' and why.startswith('not a readable image')
  assert 'BytesIO' not in why and ' at 0x' not in why, why


def test_one_bad_file_in_a_hundred_is_within_the_default_limit(tmp_path):
  for i in range(99):
    _write(tmp_path / 'data' / f'{i:03d}.png', _solid(BLUE, size=(4, 4)))
  _write(tmp_path / 'data' / 'zzz.jpg', b'')
  out, bad = images.prepare(images.list_images(str(tmp_path / 'data')), 4, 3)
  assert out.shape == (99, 4, 4, 3) and bad == [('zzz.jpg', 'empty file')]


def test_all_bad_is_a_usage_error_even_when_allowed(tmp_path):
  _write(tmp_path / 'a.png', b'\x89PNG not really')
  files = images.list_images(str(tmp_path))
  assert _usage_error(images.prepare, files, 8, 3, max_bad_fraction=1.0) == 'no readable images'


def test_decode_rejects_non_images():
  for data, reason in [(b'', 'empty file'), (b'  <html><head>', 'HTML page'),
                       (bytes(range(256)), 'not a readable image')]:
    with pytest.raises(images.BadImage, match=reason):
      images.decode(data)


# Sizes, crops and modes.

def test_mixed_sizes_are_center_cropped_squares(tmp_path):
  wide = np.zeros((30, 90, 3), np.uint8)
  wide[:, :30], wide[:, 30:60], wide[:, 60:] = RED, GREEN, BLUE
  tall = np.transpose(wide, (1, 0, 2)).copy()
  _write(tmp_path / 'a_wide.png', _encode(wide))
  _write(tmp_path / 'b_tall.png', _encode(tall))
  _write(tmp_path / 'c_small.png', _solid(GREEN, size=(5, 5)))
  _write(tmp_path / 'd_big.jpg', _solid(GREEN, size=(100, 60), fmt='JPEG'))
  out, bad = images.prepare(images.list_images(str(tmp_path)), 8, 3)
  assert out.shape == (4, 8, 8, 3) and bad == []
  np.testing.assert_array_equal(out[:3], np.broadcast_to(GREEN, (3, 8, 8, 3)))
  assert np.abs(out[3].astype(int) - GREEN).max() <= 3  # JPEG's rounding


def test_crop_keeps_the_centred_square(tmp_path):
  image = np.zeros((30, 40, 3), np.uint8)
  image[10:20, 15:25] = 255  # a white 10 x 10 square in the centre, black around it
  _write(tmp_path / 'a.png', _encode(image))
  files = images.list_images(str(tmp_path))
  cropped, _ = images.prepare(files, 5, 3, crop=10)
  assert np.all(cropped == 255)
  whole, _ = images.prepare(files, 5, 3)  # the centred 30 x 30 square: white inside black
  assert whole[0, 2, 2].min() > 200 and whole[0, 0, 0].max() < 50
  clamped, _ = images.prepare(files, 5, 3, crop=1000)  # at most the shorter side
  np.testing.assert_array_equal(clamped, whole)


def test_grayscale(tmp_path):
  _write(tmp_path / 'gray.png', _encode(Image.new('L', (8, 8), 77)))
  files = images.list_images(str(tmp_path))
  assert images.decode(files[0][1]()).shape == (8, 8, 1)
  rgb, _ = images.prepare(files, 8, 3)
  assert rgb.shape == (1, 8, 8, 3) and np.all(rgb == 77)
  gray, _ = images.prepare(files, 4, 1)
  assert gray.shape == (1, 4, 4, 1) and np.all(gray == 77)


def test_rgb_as_one_channel(tmp_path):
  _write(tmp_path / 'red.png', _solid(RED))
  gray, _ = images.prepare(images.list_images(str(tmp_path)), 8, 1)
  assert gray.shape == (1, 8, 8, 1) and np.all(gray == 76)  # ITU-R 601: 0.299 * 255


def test_rgba_is_composited_on_black(tmp_path):
  rgba = np.zeros((8, 8, 4), np.uint8)
  rgba[:, :4] = (200, 100, 50, 0)  # transparent: black
  rgba[:, 4:6] = (200, 100, 50, 255)  # opaque: unchanged
  rgba[:, 6:] = (200, 100, 50, 128)  # half: half as bright
  _write(tmp_path / 'a.png', _encode(Image.fromarray(rgba, 'RGBA')))
  out, _ = images.prepare(images.list_images(str(tmp_path)), 8, 3)
  assert out.shape == (1, 8, 8, 3)
  assert np.all(out[0, :, :4] == 0)
  assert np.all(out[0, :, 4:6] == (200, 100, 50))
  assert np.abs(out[0, :, 6:].astype(int) - (100, 50, 25)).max() <= 1


def test_palette(tmp_path):
  image = Image.new('P', (8, 8), 0)
  image.putpalette([10, 20, 30, 200, 0, 0] + [0] * 762)
  image.paste(1, (4, 0, 8, 8))
  _write(tmp_path / 'a.png', _encode(image))
  _write(tmp_path / 'b.png', _encode(image, transparency=1))  # index 1 transparent: black
  out, _ = images.prepare(images.list_images(str(tmp_path)), 8, 3)
  assert np.all(out[:, :, :4] == (10, 20, 30))
  assert np.all(out[0, :, 4:] == (200, 0, 0)) and np.all(out[1, :, 4:] == 0)


def test_cmyk_jpeg(tmp_path):
  _write(tmp_path / 'a.jpg', _encode(Image.new('CMYK', (8, 8), (0, 255, 255, 0)), 'JPEG'))
  out, _ = images.prepare(images.list_images(str(tmp_path)), 8, 3)
  assert out.shape == (1, 8, 8, 3) and np.abs(out.astype(int) - RED).max() <= 3


def test_16_bit_grayscale(tmp_path):
  values = np.array([[0, 65535, 257 * 100, 256]] * 4, np.uint16)
  image = Image.fromarray(values)
  assert image.mode == 'I;16'
  _write(tmp_path / 'a.png', _encode(image))
  files = images.list_images(str(tmp_path))
  decoded = images.decode(files[0][1]())
  assert decoded.shape == (4, 4, 1) and decoded.dtype == np.uint8
  np.testing.assert_array_equal(decoded[0, :, 0], [0, 255, 100, 0])
  out, _ = images.prepare(files, 4, 1)
  assert out.shape == (1, 4, 4, 1)
  np.testing.assert_array_equal(out[0, :, :, 0], decoded[..., 0])


@pytest.mark.parametrize('limit', [1000, 6000])  # error above 2x the limit, warning above 1x
def test_decompression_bomb_is_skipped(tmp_path, monkeypatch, limit):
  monkeypatch.setattr(Image, 'MAX_IMAGE_PIXELS', limit)
  _write(tmp_path / 'big.png', _solid(RED, size=(100, 100)))
  _write(tmp_path / 'small.png', _solid(GREEN, size=(10, 10)))
  files = images.list_images(str(tmp_path))
  with pytest.raises(images.BadImage, match='too large'):
    images.decode(files[0][1]())
  out, bad = images.prepare(files, 8, 3, max_bad_fraction=0.5)
  assert out.shape == (1, 8, 8, 3) and np.all(out == GREEN)
  assert [name for name, _ in bad] == ['big.png'] and bad[0][1].startswith('too large')


# Folders and zips: recursion, hidden files, hostile and corrupt archives.

def test_folder_recursion_hidden_files_and_order(tmp_path):
  formats = {'.png': 'PNG', '.jpg': 'PNG', '.jpeg': 'PNG', '.webp': 'WEBP', '.bmp': 'BMP'}
  for name in ['z.png', 'b/deeper/c.jpg', 'b/a.jpeg', 'A.JPG', 'a/x.webp', 'm.bmp']:
    fmt = formats[os.path.splitext(name)[1].lower()]  # PNG in .jpg: PIL reads the content
    _write(tmp_path / name, _encode(Image.new('RGB', (8, 8), GREEN), fmt, lossless=True)
           if fmt == 'WEBP' else _solid(GREEN, fmt=fmt))
  _write(tmp_path / '.hidden.png', _solid(RED))
  _write(tmp_path / 'b' / '._c.jpg', b'AppleDouble')
  _write(tmp_path / '.git' / 'x.png', _solid(RED))
  _write(tmp_path / '__MACOSX' / 'b' / 'a.jpeg', _solid(RED))
  _write(tmp_path / 'b' / 'notes.txt', b'text')
  _write(tmp_path / 'b' / 'photo.gif', b'GIF89a')
  files = images.list_images(str(tmp_path))
  names = _names(files)
  expected = ['A.JPG', 'a/x.webp', 'b/a.jpeg', 'b/deeper/c.jpg', 'm.bmp', 'z.png']
  assert names == [name.replace('/', os.sep) for name in expected]
  out, bad = images.prepare(files, 8, 3)
  assert out.shape == (6, 8, 8, 3) and bad == [] and np.all(out == GREEN)


def test_zip_recursion_hidden_files_and_order(tmp_path):
  path = _zip(tmp_path / 'faces.zip', {
      'faces/': b'',
      'faces/sub/b.png': _solid(BLUE),
      'faces/a.jpg': _solid(RED, fmt='JPEG'),
      '__MACOSX/faces/._a.jpg': b'AppleDouble',
      'faces/.DS_Store': b'',
      'faces/.thumbs/a.png': _solid(RED),
      'faces/readme.txt': b'text',
      'top.png': _solid(GREEN),
  }, zipfile.ZIP_DEFLATED)
  files = images.list_images(str(path))
  assert _names(files) == ['faces/a.jpg', 'faces/sub/b.png', 'top.png']
  out, bad = images.prepare(files, 8, 3)
  assert out.shape == (3, 8, 8, 3) and bad == []
  assert np.abs(out[0].astype(int) - RED).max() <= 3
  assert np.all(out[1] == BLUE) and np.all(out[2] == GREEN)


def test_empty_zip(tmp_path):
  path = _zip(tmp_path / 'data.zip', {'notes.txt': b'text'})
  message = _usage_error(images.list_images, str(path))
  assert 'no images' in message and '1 other file(s)' in message


@pytest.mark.parametrize('name', ['../evil.jpg', 'faces/../../evil.jpg', '/abs.jpg',
                                  '..\\evil.jpg', 'C:/evil.jpg'])
def test_zip_entries_outside_the_root_are_refused(tmp_path, name):
  root = tmp_path / 'data'
  root.mkdir()
  path = _zip(root / 'data.zip', {'ok.png': _solid(GREEN), name: _solid(RED)})
  message = _usage_error(images.list_images, str(path))
  assert 'outside the archive root' in message and repr(name) in message
  assert not (tmp_path / 'evil.jpg').exists() and not (tmp_path.parent / 'evil.jpg').exists()
  assert not os.path.exists('/abs.jpg')
  assert [p.name for p in tmp_path.rglob('*')] == ['data', 'data.zip']


def test_random_bytes_named_zip(tmp_path):
  path = _write(tmp_path / 'data.zip', np.random.default_rng(0).bytes(4096))
  message = _usage_error(images.list_images, str(path))
  assert str(path) in message and 'not a readable zip archive' in message


def test_truncated_zip(tmp_path):
  data = _zip(tmp_path / 'full.zip', {f'{i}.png': _solid(GREEN) for i in range(4)}).read_bytes()
  head = _write(tmp_path / 'head.zip', data[:len(data) // 2])  # no central directory
  assert 'not a readable zip archive' in _usage_error(images.list_images, str(head))
  tail = _write(tmp_path / 'tail.zip', data[len(data) // 2:])  # directory, half the members
  message = _usage_error(lambda: images.prepare(images.list_images(str(tail)), 8, 3))
  assert '4 of 4 files are not readable images' in message
  assert '0.png: unreadable in the zip' in message


def test_damaged_zip_members_are_bad_images(tmp_path):
  payload = np.random.default_rng(0).integers(0, 4, (64, 64), np.uint8)
  png = _encode(payload * 60, compress_level=0)  # deflates to a long stream
  data = bytearray(_zip(tmp_path / 'ok.zip', {'a.png': png, 'b.png': png},
                        zipfile.ZIP_DEFLATED).read_bytes())
  start = data.index(b'a.png') + len('a.png')
  data[start + 100:start + 140] = bytes(40)  # zeros in the middle of a.png's deflate data
  path = _write(tmp_path / 'damaged.zip', bytes(data))
  out, bad = images.prepare(images.list_images(str(path)), 8, 1, max_bad_fraction=0.5)
  assert out.shape == (1, 8, 8, 1)
  assert [name for name, _ in bad] == ['a.png'] and 'unreadable in the zip' in bad[0][1]


@pytest.mark.parametrize('field, value, reason', [
    (6, 1, 'encrypted'),  # general-purpose flag bit 0 (offset 8 in the central directory)
    (8, 99, 'compression method is not supported'),  # method (offset 10 there)
])
def test_unreadable_zip_members_are_bad_images(tmp_path, field, value, reason):
  data = bytearray(_zip(tmp_path / 'ok.zip', {'a.png': _solid(RED), 'b.png': _solid(GREEN)})
                   .read_bytes())
  central = data.index(b'PK\x01\x02')  # a.png's central directory record
  assert data[:4] == b'PK\x03\x04'  # a.png's local header
  data[field] |= value
  data[central + field + 2] |= value
  path = _write(tmp_path / 'odd.zip', bytes(data))
  out, bad = images.prepare(images.list_images(str(path)), 8, 3, max_bad_fraction=0.5)
  assert out.shape == (1, 8, 8, 3) and np.all(out == GREEN)
  assert [name for name, _ in bad] == ['a.png'] and reason in bad[0][1]
