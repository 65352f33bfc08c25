"""Saves and restores the whole train state with orbax, surviving kills, damage, full disks.

Orbax writes a checkpoint into `<step>.orbax-checkpoint-tmp` and renames it into place when
the save has finished; just before the rename, the save is sealed with its manifest
(manifest.py). So a checkpoint directory exists only when finished, and every finished one
carries its manifest. On restore the newest checkpoint whose files match their manifest (and
that orbax reads) is used; a damaged one is moved to `<workdir>/damaged_checkpoints/` with a
warning, never deleted. Orbax removes the temporary directories of killed saves when a manager
opens the directory, and deletes checkpoints beyond the last `keep` only after a newer one has
finished.

The state holds everything a resume needs (see state.TrainState); the run's config is saved
beside it as JSON, with `data` (what identifies the training images).
"""

import collections
import glob
import logging as logging_lib
import os
import shutil
import sys
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from facegan_jax import config as config_lib
from facegan_jax.checkpoint import manifest
from facegan_jax.errors import CheckpointError, UsageError, one_line

# Config fields that fix the state's shapes (lr_decay: the optimizers' schedule state):
# resuming with other values cannot work.
SHAPE_FIELDS = ('model', 'resolution', 'channels', 'z_dim', 'conv_dim', 'widths', 'blocks',
                'groups', 'hidden_dim', 'g_first_bn', 'lr_decay', 'condition', 'num_classes')


_ORBAX_DIR = os.path.dirname(os.path.abspath(ocp.__file__))


def _not_orbax_error(record):
  """False for what orbax logs of a failed save: its errors, and the warnings of its save
  threads (asyncio's too, running orbax's writes). Every such failure also reaches
  `Checkpoints`, which reports it in one line."""
  orbax = (os.path.abspath(record.pathname).startswith(_ORBAX_DIR)
           or record.getMessage().startswith('Task exception was never retrieved'))
  return not (orbax and (record.levelno >= logging_lib.ERROR
                         or record.threadName != 'MainThread'))


def _quiet_failed_save_noise(hook=sys.unraisablehook):
  """A failed save (a full disk, its directory deleted) makes orbax's threads log each failed
  write with its traceback, hundreds of lines around the one-line error the user gets: drop
  those. After it, tensorstore's pending writes complete into orbax's closed asyncio loop and
  report 'Event loop is closed' through sys.unraisablehook: drop those too (and never-awaited
  coroutine warnings); pass everything else on."""
  handler = logging.get_absl_handler()
  if _not_orbax_error not in handler.filters:
    handler.addFilter(_not_orbax_error)
  def unraisablehook(info):
    if not (info.exc_type is RuntimeError and str(info.exc_value) == 'Event loop is closed'):
      hook(info)
  sys.unraisablehook = unraisablehook
  # The same writes can leave orbax coroutines that never ran, reported at exit (under load).
  warnings.filterwarnings('ignore', r'coroutine .* was never awaited', RuntimeWarning)


def leaf_names(tree):
  """{'g_params.layer.kernel.value'-style name: leaf}, as orbax names the saved arrays."""
  def name(path):
    return '.'.join(str(getattr(k, 'name', getattr(k, 'key', getattr(k, 'idx', k))))
                    for k in path)
  return {name(path): leaf for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def non_finite(state):
  """Names of the floating-point arrays of `state` that hold a NaN or an infinity.

  Checked on this process's copy with numpy: a jitted check would first have to compile,
  which costs more than the check itself at the states this runs on.
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
      _quiet_failed_save_noise()
    self.manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(
            # Read-only managers neither save nor delete (orbax warns unless told so).
            max_to_keep=None if read_only else keep, save_interval_steps=0 if read_only else 1,
            create=not read_only, read_only=read_only, cleanup_tmp_directories=not read_only,
            async_options=ocp.AsyncOptions(post_finalization_callback=self._seal)),
        item_handlers=dict(state=ocp.StandardCheckpointHandler(),
                           config=ocp.JsonCheckpointHandler()))
    self.last_saved = self.manager.latest_step()  # the last finished save
    self.restored_config = None
    self.data = {}  # saved beside the config: what identifies the training data
    self._in_flight = None

  def _seal(self):
    """In orbax's save thread, before the rename: the manifest of the step being saved."""
    step = self._sealing.popleft()
    tmp = glob.glob(os.path.join(self.directory, f'{step}.orbax-checkpoint-tmp*'))
    if len(tmp) != 1:
      raise RuntimeError(f'expected one temporary directory of step {step}, found {tmp}')
    if jax.process_index() == 0:
      manifest.write(tmp[0], step)

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
    self._orbax_call(step, lambda: self.manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        config=ocp.args.JsonSave(
            dict(vars(self.config), **self.data) if self.config else {}))))

  def wait(self):
    """Blocks until the last save has finished; raises CheckpointError if it failed."""
    self._orbax_call(None, self.manager.wait_until_finished)

  def _orbax_call(self, step, fn):
    """Runs the orbax call `fn` (which first finishes the save in flight), then tracks `step`
    as in flight; any failure becomes one CheckpointError line."""
    try:
      started = fn()
    except Exception as e:  # noqa: BLE001  (orbax's errors vary: one line for the user)
      failed = self._in_flight if self._in_flight is not None else step
      self._sealing.clear()
      self._in_flight = None
      left = [s for s in self._finished_on_disk() if s != failed]
      deleted = self.last_saved is not None and self.last_saved not in left
      cause = 'its files were deleted during the run' if deleted else one_line(e)
      left = (f'checkpoint {max(left)} is intact' if left else
              'no checkpoint of this run is left' if deleted else 'there is no earlier checkpoint')
      raise CheckpointError(f'saving checkpoint {failed} to {self.directory} failed: '
                            f'{cause}; {left}') from None
    if started is False:  # orbax saves no step at or below its latest, and says only this
      self._sealing.pop()
      raise CheckpointError(f'checkpoint {step} was not saved: {self.directory} already holds '
                            f'checkpoint {self.manager.latest_step()}, a later step')
    if self._in_flight is not None:
      self.last_saved = self._in_flight
    self._in_flight = step

  def _finished_on_disk(self):
    """The steps of the undamaged checkpoints on disk now (files may have been deleted)."""
    try:
      names = os.listdir(self.directory)
    except OSError:
      return []
    return [int(name) for name in names if name.isdigit() and manifest.find_damage(
        os.path.join(self.directory, name)) is None]

  def restore(self, abstract_state, step=None, what='checkpoint', fixed=SHAPE_FIELDS):
    """The newest undamaged state (or the one at `step`), laid out like `abstract_state`.

    Returns None when there is none; raises UsageError when the saved run's shapes differ
    from `abstract_state`'s or its config from ours in a `fixed` field. Damaged checkpoints
    are moved aside (skipped when read-only). The saved config (a dict) is then in
    `restored_config`.
    """
    steps = [step] if step is not None else sorted(self.manager.all_steps(), reverse=True)
    for i, step in enumerate(steps):
      problem = manifest.find_damage(os.path.join(self.directory, str(step)))
      if problem is None:
        try:
          self.restored_config = self._check_shapes(step, abstract_state, what, fixed)
          return self.manager.restore(step, args=ocp.args.Composite(
              state=ocp.args.StandardRestore(abstract_state))).state
        except UsageError:
          raise
        except Exception as e:  # noqa: BLE001  (unreadable despite its manifest)
          problem = one_line(e)
      self._set_aside(step, problem, steps[i + 1] if i + 1 < len(steps) else None)
    return None

  def _check_shapes(self, step, abstract_state, what, fixed):
    config = self.manager.restore(step, args=ocp.args.Composite(
        config=ocp.args.JsonRestore())).config or {}
    if self.config is not None:
      # Fields an older checkpoint lacks are not compared.
      differ = [name for name in fixed
                if name in config and config[name] != getattr(self.config, name)]
      if differ:
        theirs = ' '.join(config_lib.flag(name, config[name]) for name in differ)
        ours = ' '.join(config_lib.flag(name, getattr(self.config, name)) for name in differ)
        raise UsageError(f'{what} {step} in {self.directory} was trained with {theirs}, this '
                         f'run has {ours}; use another --workdir or the same flags')
    ours = leaf_names(abstract_state)
    theirs = leaf_names(self.manager.item_metadata(step)['state'])
    for name in sorted(set(ours) | set(theirs)):
      mine, its = ours.get(name), theirs.get(name)
      if mine is None or its is None or tuple(mine.shape) != tuple(its.shape):
        raise UsageError(
            f'{what} {step} in {self.directory} does not fit this run: {name} is '
            f'{_shape(its)} there and {_shape(mine)} here')
    return config

  def _set_aside(self, step, problem, fallback):
    path = os.path.join(self.directory, str(step))
    then = f'checkpoint {fallback}' if fallback is not None else 'nothing'
    if self.read_only:
      logging.warning('Checkpoint %s is damaged (%s); trying %s', path, problem, then)
      return
    aside = move_aside(path, os.path.join(os.path.dirname(self.directory),
                                          'damaged_checkpoints'))
    self.manager.reload()
    self.last_saved = self.manager.latest_step()
    logging.warning('Checkpoint %s is damaged (%s); moved it to %s, trying %s', path, problem,
                    aside, then)

  def close(self, quiet=False):
    """Waits for the save in flight and closes orbax's manager; with `quiet`, a failed save
    is not raised."""
    error = None
    for call in (self.manager.wait_until_finished, self.manager.close):
      try:
        self._orbax_call(None, call)
      except CheckpointError as e:
        error = error or e
    if error and not quiet:
      raise error


def move_aside(path, folder):
  """Moves `path` into `folder` under its own name (with '+'s added while that is taken), never
  over anything; returns where it went."""
  aside = os.path.join(folder, os.path.basename(path))
  while os.path.exists(aside):
    aside += '+'
  os.makedirs(folder, exist_ok=True)
  shutil.move(path, aside)
  return aside


def _shape(leaf):
  return 'absent' if leaf is None else str(tuple(leaf.shape))
