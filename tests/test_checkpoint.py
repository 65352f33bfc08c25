"""Checkpoint helpers: the non-finite scan before a save and the manifest seal."""

import json
import os

import jax.numpy as jnp
from facegan_jax.checkpoint import manifest as manifest_lib
from facegan_jax.checkpoint.manager import non_finite


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
