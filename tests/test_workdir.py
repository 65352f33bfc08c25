"""What surrounds the checkpoints survives its users: the workdir's lock and checks, damaged
prepared-data caches, killed dataset preparations, and the memory check."""

import os
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image
from tensorflow_datasets.core.utils import file_utils

from facegan_jax import train
from facegan_jax.config import Config
from facegan_jax.data import cache, sources, tfds_prepare
from facegan_jax.errors import UsageError
from facegan_jax.run import memory, workdir as workdir_lib


def test_a_locked_workdir_refuses_a_second_run_naming_the_holder(tmp_path):
  first = workdir_lib.Lock(str(tmp_path)).acquire()
  # flock locks belong to an open file: a second open, even in this process, is refused.
  with pytest.raises(UsageError, match=rf'is in use by another run \(pid {os.getpid()} on '):
    workdir_lib.Lock(str(tmp_path)).acquire()
  first.release()
  workdir_lib.Lock(str(tmp_path)).acquire().release()  # free again once released


def test_empty_and_unusable_workdirs_are_one_line_errors(tmp_path):
  for empty in ('', ' '):
    with pytest.raises(UsageError, match=r'^--workdir is empty \(an unset shell variable\?\)'):
      workdir_lib.check(empty)
  a_file = tmp_path / 'file'
  a_file.write_text('x')
  with pytest.raises(UsageError, match='is a file, not a directory'):
    workdir_lib.check(str(a_file))
  with pytest.raises(UsageError, match=rf'^--workdir={a_file}/run/x: {a_file} is a file'):
    workdir_lib.create(str(a_file / 'run' / 'x'))
  workdir_lib.create(str(tmp_path / 'new' / 'run'))
  assert (tmp_path / 'new' / 'run').is_dir()


def test_a_damaged_cache_is_moved_aside_and_rebuilt(tmp_path):
  images = np.arange(2 * 8 * 8 * 3, dtype=np.uint8).reshape(2, 8, 8, 3)
  path = str(tmp_path / 'facegan-train-8x8x3.npy')
  assert cache.read(path) is None  # nothing cached yet: the caller makes it
  cache.write(path, images)
  np.testing.assert_array_equal(cache.read(path), images)  # read back: not made again
  size = os.path.getsize(path)
  for damage in (lambda: os.truncate(path, size // 2),  # a copy cut short
                 lambda: open(path, 'r+b').write(b'garbage!')):  # its header overwritten
    damage()
    assert cache.read(path) is None and os.path.exists(path + '.damaged')  # to be made again
    cache.write(path, images)
    np.testing.assert_array_equal(cache.read(path), images)
    assert os.path.getsize(path) == size


def test_a_loader_rebuilds_a_damaged_cache_from_the_source(tmp_path):
  """A folder dataset's prepared images, damaged on disk, are rebuilt by the next load (the
  same array) with the damaged file kept aside."""
  pixels = np.random.default_rng(0).integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
  (tmp_path / 'faces').mkdir()
  for i, image in enumerate(pixels):
    Image.fromarray(image).save(tmp_path / 'faces' / f'{i}.png')
  config = Config(dataset=f'folder:{tmp_path / "faces"}', data_dir=str(tmp_path / 'data'),
                  resolution=8)
  prepared = np.array(sources.load_images(config))
  np.testing.assert_array_equal(prepared, pixels)
  [path] = [os.path.join(d, f) for d, _, names in os.walk(tmp_path / 'data') for f in names
            if f.endswith('.npy') and 'label' not in f]
  os.truncate(path, os.path.getsize(path) // 2)
  np.testing.assert_array_equal(sources.load_images(config), prepared)
  assert os.path.exists(path + '.damaged')


def test_preparing_removes_what_killed_preparations_left(tmp_path):
  """Under its lock, _prepare removes the incomplete.* folders TFDS names as it prepares
  (named here by TFDS's own function) and prepares once; a prepared builder is left alone."""
  version_dir = tmp_path / 'some_dataset' / '1.0.0'
  stale = file_utils._get_incomplete_dir(str(version_dir))  # noqa: SLF001
  os.makedirs(stale)
  prepared = []
  builder = types.SimpleNamespace(
      info=types.SimpleNamespace(read_from_directory=lambda path: None),
      data_dir=str(version_dir), is_prepared=lambda: bool(prepared),
      download_and_prepare=lambda: (prepared.append(os.listdir(tmp_path / 'some_dataset')),
                                    os.makedirs(version_dir)))
  tfds_prepare._prepare(builder)  # noqa: SLF001
  assert prepared == [['.facegan-prepare.lock']]  # the stale folder was gone before it ran
  tfds_prepare._prepare(builder)  # noqa: SLF001
  assert len(prepared) == 1


def test_memory_check_refuses_a_step_that_cannot_fit():
  compiled = jax.jit(lambda x: (x @ x).sum()).lower(jnp.ones((64, 64))).compile()
  analysis = compiled.memory_analysis()
  assert memory.needed_bytes(compiled) == (
      analysis.argument_size_in_bytes + analysis.output_size_in_bytes
      + analysis.temp_size_in_bytes - analysis.alias_size_in_bytes) > 0
  memory.check(compiled, Config())  # a few kB
  huge = types.SimpleNamespace(memory_analysis=lambda: types.SimpleNamespace(
      argument_size_in_bytes=10**15, output_size_in_bytes=0, temp_size_in_bytes=10**15,
      alias_size_in_bytes=0))
  with pytest.raises(UsageError, match=r'^the train step needs 4000000\.0 GB of host memory '
                                       r'at --batch_size=64 and 32px, and [\d.]+ GB are free'):
    memory.check(huge, Config())  # 2 PB per device, on this process's 2 CPU devices


@pytest.mark.parametrize('name, message', [
    ('run\nx', 'holds a line break'), ('run\udcffdir', 'is not valid UTF-8')])
def test_a_workdir_flags_txt_cannot_record_is_a_one_line_error(tmp_path, name, message):
  """flags.txt records --workdir as one line of UTF-8 text: a name it cannot hold is refused
  before anything is written."""
  with pytest.raises(UsageError, match=f'^--workdir=.*{message}'):
    workdir_lib.check(str(tmp_path / name))
  assert os.listdir(tmp_path) == []


def test_flags_txt_records_the_absolute_workdir(tmp_path, monkeypatch):
  """`--flagfile=W/flags.txt` from another directory resumes the same run, not a new one
  beside it."""
  monkeypatch.chdir(tmp_path)
  os.makedirs('runs/a')
  train.record_flags('runs/a', Config(), 0, {})
  lines = (tmp_path / 'runs' / 'a' / 'flags.txt').read_text().splitlines()
  assert f'--workdir={tmp_path / "runs" / "a"}' in lines

