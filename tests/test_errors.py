"""One-line wording of the errors a user sees."""

import errno

import pytest

from facegan_jax.errors import one_line


@pytest.mark.parametrize('error, words', [
    (OSError(errno.ENOSPC, 'No space left on device'), 'no space left on the device'),
    (ValueError('WRITE failed: [OS error 122: Disk quota exceeded]'), 'disk quota exceeded'),
    (RuntimeError('first line\nsecond line'), 'first line'),
])
def test_one_line_of_an_error(error, words):
  assert one_line(error) == words


def test_one_line_finds_a_full_disk_in_the_exception_chain():
  try:
    try:
      raise OSError(errno.ENOSPC, 'No space left on device')
    except OSError as e:
      raise RuntimeError('save failed') from e
  except RuntimeError as e:
    assert one_line(e) == 'no space left on the device'
