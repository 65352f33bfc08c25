"""Files written whole or not at all."""

import os

import pytest

from facegan_jax.run import files


def test_atomic_path_renames_a_finished_write_and_leaves_nothing_of_a_failed_one(tmp_path):
  path = str(tmp_path / 'grid.png')
  with files.atomic_path(path) as tmp:
    assert tmp.endswith('.png') and tmp != path  # writers that go by the extension still can
    with open(tmp, 'w') as f:
      f.write('first')
  assert open(path).read() == 'first'
  with pytest.raises(RuntimeError), files.atomic_path(path) as tmp:
    with open(tmp, 'w') as f:
      f.write('half')
    raise RuntimeError('killed mid-write')
  assert open(path).read() == 'first'  # the finished file is untouched
  assert os.listdir(tmp_path) == ['grid.png']  # and no temporary file is left


def test_sha256_of_a_file(tmp_path):
  (tmp_path / 'a').write_bytes(b'abc')
  assert files.sha256(str(tmp_path / 'a')) == (
      'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad')
