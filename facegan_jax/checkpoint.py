"""Orbax checkpoints of the whole train state that survive kills, damage and full disks.

Orbax writes a checkpoint into `<step>.orbax-checkpoint-tmp` and renames it into place when
the save has finished; just before the rename, `_seal` writes a manifest of the SHA-256 of
every file that holds the state into it. So a checkpoint directory exists only when finished,
and every finished one carries its manifest. On restore the newest checkpoint whose files
match their manifest (and that orbax reads) is used; a damaged one is moved to
`<workdir>/damaged_checkpoints/` with a warning, never deleted. Orbax removes the temporary
directories of killed saves when a manager opens the directory, and deletes checkpoints beyond
the last `keep` only after a newer one has finished.

The state holds everything a resume needs (see train.TrainState); the run's config is saved
beside it as JSON.
"""

import collections
import errno
import glob
import hashlib
import json
import os
import shutil
import sys
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from facegan_jax.config import UsageError

# Config fields that fix the state's shapes: resuming with other values cannot work.
SHAPE_FIELDS = ('model', 'resolution', 'channels', 'z_dim', 'conv_dim', 'g_first_bn')
MANIFEST = 'manifest.sha256.json'
# Files orbax rewrites when it commits the directory, after the manifest: bookkeeping only.
UNHASHED = ('_CHECKPOINT_METADATA', 'commit_success.txt', MANIFEST)
DISK_FULL = {errno.ENOSPC: 'no space left on the device', errno.EDQUOT: 'disk quota exceeded',
              errno.EFBIG: 'file too large for the file system'}


class CheckpointError(Exception):
  """A checkpoint could not be written; reported to the user as one line."""


def _quiet_closed_loop_errors(hook=sys.unraisablehook):
  """After a failed save, tensorstore's pending writes complete into orbax's closed asyncio
  loop and report 'Event loop is closed' tracebacks through sys.unraisablehook: noise around
  the one-line error the user gets. Drop those (and never-awaited coroutine warnings); pass
  everything else on."""
  def unraisablehook(info):
    if not (info.exc_type is RuntimeError and str(info.exc_value) == 'Event loop is closed'):
      hook(info)
  sys.unraisablehook = unraisablehook
  # The same writes can leave orbax coroutines that never ran, reported at exit (under load).
  warnings.filterwarnings('ignore', r'coroutine .* was never awaited', RuntimeWarning)


def file_hashes(root):
  """{path relative to root: SHA-256} of the files of checkpoint directory `root`."""
  hashes = {}
  for dirpath, _, filenames in os.walk(root):
    for filename in filenames:
      path = os.path.join(dirpath, filename)
      name = os.path.relpath(path, root)
      if name not in UNHASHED:
        hashes[name] = _sha256(path)
  return hashes


def _sha256(path):
  digest = hashlib.sha256()
  with open(path, 'rb') as f:
    while chunk := f.read(1 << 20):
      digest.update(chunk)
  return digest.hexdigest()


def damage(root):
  """What is wrong with checkpoint directory `root` by its manifest, or None if nothing."""
  try:
    with open(os.path.join(root, MANIFEST)) as f:
      expected = json.load(f)['files']
  except (OSError, ValueError, KeyError, TypeError):
    return f'{MANIFEST} is missing or unreadable'
  for name, digest in sorted(expected.items()):
    path = os.path.join(root, name)
    if not os.path.isfile(path):
      return f'{name} is missing'
    if _sha256(path) != digest:
      return f'{name} does not match its hash'
  return None


def describe(error):
  """One line for an exception from a save: disk full spelled out, else its first line."""
  seen = error
  while seen is not None:
    if isinstance(seen, OSError) and seen.errno in DISK_FULL:
      return DISK_FULL[seen.errno]
    seen = seen.__cause__ or seen.__context__
  text = str(error)
  for code, words in DISK_FULL.items():  # tensorstore reports errno in its message
    if os.strerror(code) in text:
      return words
  return (text.strip().splitlines() or [type(error).__name__])[0][:300]


def leaf_names(tree):
  """{'g_params.layer.kernel.value'-style name: leaf}, as orbax names the saved arrays."""
  def name(path):
    return '.'.join(str(getattr(k, 'name', getattr(k, 'key', getattr(k, 'idx', k))))
                    for k in path)
  return {name(path): leaf for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def non_finite(state):
  """Names of the floating-point arrays of `state` that hold a NaN or an infinity.

  Checked on this process's copy with numpy (~25 ms for the dcgan64 state on CPU; a jitted
  check would first compile for ~1 s).
  """
  return [name for name, x in leaf_names(state).items()
          if jnp.issubdtype(x.dtype, jnp.floating)
          and not np.isfinite(np.asarray(x.addressable_data(0))).all()]


class Checkpoints:
  """Saves and restores `TrainState`s under `directory`, keeping the last `keep`."""

  def __init__(self, directory, *, keep=3, config=None, read_only=False):
    self.directory = os.path.abspath(directory)
    self.config, self.read_only = config, read_only
    self._sealing = collections.deque()  # steps being saved, oldest first
    if not read_only:
      _quiet_closed_loop_errors()
    self.manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(
            max_to_keep=keep, create=not read_only, read_only=read_only,
            cleanup_tmp_directories=not read_only,
            async_options=ocp.AsyncOptions(post_finalization_callback=self._seal)),
        item_handlers=dict(state=ocp.StandardCheckpointHandler(),
                           config=ocp.JsonCheckpointHandler()))
    self.last_saved = self.manager.latest_step()  # the last finished save
    self._in_flight = None

  def _seal(self):
    """In orbax's save thread, before the rename: the manifest of the step being saved."""
    step = self._sealing.popleft()
    tmp = glob.glob(os.path.join(self.directory, f'{step}.orbax-checkpoint-tmp*'))
    if len(tmp) != 1:
      raise RuntimeError(f'expected one temporary directory of step {step}, found {tmp}')
    if jax.process_index() == 0:
      with open(os.path.join(tmp[0], MANIFEST), 'w') as f:
        json.dump(dict(step=step, files=file_hashes(tmp[0])), f, indent=0)

  def save(self, state, step):
    """Starts an asynchronous save of `state` as checkpoint `step`.

    Raises FloatingPointError (nothing saved) when the state holds a non-finite value, and
    CheckpointError when this or the previous save fails (a full disk, say).
    """
    bad = non_finite(state)
    if bad:
      kept = self._in_flight if self._in_flight is not None else self.last_saved
      raise FloatingPointError(
          f'non-finite values in {", ".join(bad[:3])} at step {step}; not saved'
          + (f' (checkpoint {kept} is kept)' if kept is not None else ''))
    self._sealing.append(step)
    self._guard(step, lambda: self.manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        config=ocp.args.JsonSave(vars(self.config) if self.config else {}))))

  def wait(self):
    """Blocks until the last save has finished; raises CheckpointError if it failed."""
    self._guard(None, self.manager.wait_until_finished)

  def _guard(self, step, fn):
    """Runs `fn` (which first finishes the save in flight); tracks the last finished step."""
    try:
      fn()
    except Exception as e:  # noqa: BLE001  (orbax's errors vary: one line for the user)
      failed = self._in_flight if self._in_flight is not None else step
      self._sealing.clear()
      self._in_flight = None
      intact = (f'checkpoint {self.last_saved} is intact' if self.last_saved is not None
                else 'there is no earlier checkpoint')
      raise CheckpointError(f'saving checkpoint {failed} to {self.directory} failed: '
                            f'{describe(e)}; {intact}') from None
    if self._in_flight is not None:
      self.last_saved = self._in_flight
    self._in_flight = step

  def restore(self, abstract_state, step=None, what='checkpoint'):
    """The newest undamaged state (or the one at `step`), laid out like `abstract_state`.

    Returns None when there is none; raises UsageError when the saved run's shapes differ
    from `abstract_state`'s. Damaged checkpoints are moved aside (skipped when read-only).
    """
    steps = [step] if step is not None else sorted(self.manager.all_steps(), reverse=True)
    for i, step in enumerate(steps):
      problem = damage(os.path.join(self.directory, str(step)))
      if problem is None:
        try:
          self._check_shapes(step, abstract_state, what)
          return self.manager.restore(step, args=ocp.args.Composite(
              state=ocp.args.StandardRestore(abstract_state))).state
        except UsageError:
          raise
        except Exception as e:  # noqa: BLE001  (unreadable despite its manifest)
          problem = describe(e)
      self._set_aside(step, problem, steps[i + 1] if i + 1 < len(steps) else None)
    return None

  def _check_shapes(self, step, abstract_state, what):
    config = self.manager.restore(step, args=ocp.args.Composite(
        config=ocp.args.JsonRestore())).config or {}
    if self.config is not None:
      for name in SHAPE_FIELDS:
        if name in config and config[name] != getattr(self.config, name):
          raise UsageError(
              f'{what} {step} in {self.directory} was trained with --{name}={config[name]}, '
              f'this run has --{name}={getattr(self.config, name)}; use another --workdir '
              'or the same flags')
    ours = leaf_names(abstract_state)
    theirs = leaf_names(self.manager.item_metadata(step)['state'])
    for name in sorted(set(ours) | set(theirs)):
      mine, its = ours.get(name), theirs.get(name)
      if mine is None or its is None or tuple(mine.shape) != tuple(its.shape):
        raise UsageError(
            f'{what} {step} in {self.directory} does not fit this run: {name} is '
            f'{_shape(its)} there and {_shape(mine)} here')

  def _set_aside(self, step, problem, fallback):
    path = os.path.join(self.directory, str(step))
    then = f'checkpoint {fallback}' if fallback is not None else 'nothing'
    if self.read_only:
      logging.warning('Checkpoint %s is damaged (%s); trying %s', path, problem, then)
      return
    aside = os.path.join(os.path.dirname(self.directory), 'damaged_checkpoints', str(step))
    while os.path.exists(aside):
      aside += '+'
    os.makedirs(os.path.dirname(aside), exist_ok=True)
    shutil.move(path, aside)
    self.manager.reload()
    self.last_saved = self.manager.latest_step()
    logging.warning('Checkpoint %s is damaged (%s); moved it to %s, trying %s', path, problem,
                    aside, then)

  def close(self, quiet=False):
    """Waits for the save in flight; with `quiet`, a failed save is not raised."""
    try:
      self.wait()
    except CheckpointError:
      if not quiet:
        raise
    finally:
      self.manager.close()


def _shape(leaf):
  return 'absent' if leaf is None else str(tuple(leaf.shape))


def abstract_like(state_shapes, sharding):
  """ShapeDtypeStructs of `state_shapes` placed with `sharding` (for restoring)."""
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding),
                      state_shapes)


def read_state(step_dir):
  """The state saved in checkpoint directory `step_dir`, as a tree of arrays on this process's
  first device, whatever devices saved it (for comparing and inspecting checkpoints)."""
  path = os.path.join(step_dir, 'state')
  checkpointer = ocp.StandardCheckpointer()
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
                        checkpointer.metadata(path).item_metadata.tree)
  return checkpointer.restore(path, target)
