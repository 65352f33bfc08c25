"""Checkpoint helpers: finiteness, manifests, and one-line descriptions of save failures."""

import errno
import json
import os

import jax.numpy as jnp
import pytest

from facegan_jax import checkpoint


def test_non_finite_names_the_arrays_holding_nan_or_inf():
  state = dict(g=dict(w=jnp.ones(3), b=jnp.array([0.0, jnp.nan])),
               d=[jnp.array([jnp.inf]), jnp.zeros(2)], step=jnp.array(3, jnp.int32))
  assert checkpoint.non_finite(state) == ['d.0', 'g.b']
  assert checkpoint.non_finite(dict(w=jnp.ones(2), step=jnp.array(1))) == []


def test_manifest_catches_a_flipped_byte_a_truncation_and_a_missing_file(tmp_path):
  (tmp_path / 'state').mkdir()
  (tmp_path / 'state' / 'a').write_bytes(b'x' * 1000)
  (tmp_path / 'b').write_bytes(b'y' * 10)
  (tmp_path / '_CHECKPOINT_METADATA').write_text('{}')  # rewritten by orbax: not hashed
  assert checkpoint.damage(str(tmp_path)) == f'{checkpoint.MANIFEST} is missing or unreadable'
  manifest = dict(files=checkpoint.file_hashes(str(tmp_path)))
  assert sorted(manifest['files']) == ['b', os.path.join('state', 'a')]
  (tmp_path / checkpoint.MANIFEST).write_text(json.dumps(manifest))
  (tmp_path / '_CHECKPOINT_METADATA').write_text('{"commit": 1}')
  assert checkpoint.damage(str(tmp_path)) is None
  (tmp_path / 'state' / 'a').write_bytes(b'x' * 499 + b'z' + b'x' * 500)
  assert checkpoint.damage(str(tmp_path)) == f'{os.path.join("state", "a")} does not match its hash'
  (tmp_path / 'state' / 'a').write_bytes(b'x' * 500)
  assert 'does not match its hash' in checkpoint.damage(str(tmp_path))
  (tmp_path / 'state' / 'a').unlink()
  assert checkpoint.damage(str(tmp_path)) == f'{os.path.join("state", "a")} is missing'


@pytest.mark.parametrize('error, words', [
    (OSError(errno.ENOSPC, 'No space left on device'), 'no space left on the device'),
    (ValueError('WRITE failed: [OS error 122: Disk quota exceeded]'), 'disk quota exceeded'),
    (RuntimeError('first line\nsecond line'), 'first line'),
])
def test_describe_gives_one_line(error, words):
  assert checkpoint.describe(error) == words


def test_describe_finds_a_full_disk_in_the_exception_chain():
  try:
    try:
      raise OSError(errno.ENOSPC, 'No space left on device')
    except OSError as e:
      raise RuntimeError('save failed') from e
  except RuntimeError as e:
    assert checkpoint.describe(e) == 'no space left on the device'


def test_a_non_finite_metric_stops_the_run_naming_it_and_the_step():
  from facegan_jax import logbook  # noqa: PLC0415
  assert logbook.checked(dict(d_loss=jnp.array(0.5)), 3) == dict(d_loss=0.5)
  with pytest.raises(FloatingPointError, match=r'^non-finite d_loss, g_grad_norm at step 7; '):
    logbook.checked(dict(d_loss=jnp.array(jnp.nan), g_grad_norm=jnp.array(jnp.inf),
                       g_loss=jnp.array(1.0)), 7)
