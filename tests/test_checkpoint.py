"""Checkpoint helpers: the non-finite scan before a save and the manifest seal."""

import json
import logging
import os
import shutil

import jax.numpy as jnp
import pytest
from absl import logging as absl_logging

from facegan_jax.checkpoint import manifest as manifest_lib
from facegan_jax.checkpoint.manager import Checkpoints, non_finite
from facegan_jax.config import Config
from facegan_jax.errors import CheckpointError


def test_non_finite_names_the_arrays_holding_nan_or_inf():
  state = dict(g=dict(w=jnp.ones(3), b=jnp.array([0.0, jnp.nan])),
               d=[jnp.array([jnp.inf]), jnp.zeros(2)], step=jnp.array(3, jnp.int32))
  assert non_finite(state) == ['d.0', 'g.b']
  assert non_finite(dict(w=jnp.ones(2), step=jnp.array(1))) == []


def test_manifest_catches_a_flipped_byte_a_truncation_and_a_missing_file(tmp_path):
  (tmp_path / 'state').mkdir()
  (tmp_path / 'state' / 'a').write_bytes(b'x' * 1000)
  (tmp_path / 'b').write_bytes(b'y' * 10)
  (tmp_path / '_CHECKPOINT_METADATA').write_text('{}')  # rewritten by orbax: not hashed
  assert manifest_lib.find_damage(str(tmp_path)) == f'{manifest_lib.MANIFEST} is missing or unreadable'
  manifest = dict(files=manifest_lib.file_hashes(str(tmp_path)))
  assert sorted(manifest['files']) == ['b', os.path.join('state', 'a')]
  (tmp_path / manifest_lib.MANIFEST).write_text(json.dumps(manifest))
  (tmp_path / '_CHECKPOINT_METADATA').write_text('{"commit": 1}')
  assert manifest_lib.find_damage(str(tmp_path)) is None
  (tmp_path / 'state' / 'a').write_bytes(b'x' * 499 + b'z' + b'x' * 500)
  assert manifest_lib.find_damage(str(tmp_path)) == f'{os.path.join("state", "a")} does not match its hash'
  (tmp_path / 'state' / 'a').write_bytes(b'x' * 500)
  assert 'does not match its hash' in manifest_lib.find_damage(str(tmp_path))
  (tmp_path / 'state' / 'a').unlink()
  assert manifest_lib.find_damage(str(tmp_path)) == f'{os.path.join("state", "a")} is missing'


def _saved(directory, step):
  return os.path.isdir(os.path.join(directory, str(step))) and manifest_lib.find_damage(
      os.path.join(directory, str(step))) is None


def test_a_save_at_or_below_the_latest_step_is_an_error_and_later_saves_seal_their_own(
    tmp_path):
  """Orbax saves nothing for such a step and only returns False: it must not go unnoticed,
  nor leave its seal to be taken by the next save."""
  ckpts = Checkpoints(str(tmp_path / 'best'), keep=1, config=Config())
  state = dict(w=jnp.ones(3))
  ckpts.save(state, 20)
  with pytest.raises(CheckpointError, match=r'^checkpoint 10 was not saved: .*best already '
                     r'holds checkpoint 20, a later step$'):
    ckpts.save(state, 10)
  ckpts.save(state, 30)
  ckpts.close()
  assert _saved(ckpts.directory, 30) and not os.path.exists(tmp_path / 'best' / '10')


def test_checkpoints_deleted_during_a_save_is_one_true_line(tmp_path, monkeypatch):
  """Deleted while orbax writes: one line that says so (no 'intact' checkpoint that is gone),
  and none of orbax's per-write tracebacks on the console."""
  ckpts = Checkpoints(str(tmp_path / 'checkpoints'), keep=2, config=Config())
  state = dict(w=jnp.ones(3))
  ckpts.save(state, 10)
  ckpts.wait()
  assert _saved(ckpts.directory, 10)
  write = manifest_lib.write

  def deleted_before_sealing(root, step):
    shutil.rmtree(ckpts.directory)
    write(root, step)

  monkeypatch.setattr(manifest_lib, 'write', deleted_before_sealing)
  shown = []  # the log records the console shows (absl's handler and its filters)

  class Console(logging.Handler):
    def emit(self, record):
      if absl_logging.get_absl_handler().filter(record):
        shown.append(record)

  console = Console()
  logging.getLogger().addHandler(console)
  try:
    ckpts.save(state, 20)
    with pytest.raises(CheckpointError) as error:
      ckpts.wait()
  finally:
    logging.getLogger().removeHandler(console)
    ckpts.close(quiet=True)
  assert str(error.value) == (f'saving checkpoint 20 to {ckpts.directory} failed: its files '
                              'were deleted during the run; no checkpoint of this run is left')
  assert [r.getMessage() for r in shown if r.levelno >= logging.WARNING or r.exc_info] == []
