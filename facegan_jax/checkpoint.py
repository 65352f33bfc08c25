"""Orbax checkpoints of the whole train state, with the run's config as JSON metadata."""

import os

import jax
import orbax.checkpoint as ocp

from facegan_jax.config import UsageError

# Config fields that fix the state's shapes: resuming with other values cannot work.
SHAPE_FIELDS = ('model', 'resolution', 'channels', 'z_dim', 'conv_dim', 'g_first_bn')


class Checkpoints:
  """Saves and restores `TrainState`s under `directory`, keeping the last `keep`."""

  def __init__(self, directory, *, keep=3, config=None):
    self.config = config
    self.manager = ocp.CheckpointManager(
        os.path.abspath(directory),
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True),
        item_names=('state', 'config'))

  def latest_step(self):
    return self.manager.latest_step()

  def save(self, state, step):
    """Starts an asynchronous save of `state` as checkpoint `step`."""
    self.manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        config=ocp.args.JsonSave(vars(self.config) if self.config else {})))

  def restore(self, abstract_state, step=None):
    """The state saved at `step` (default: latest), laid out like `abstract_state`.

    Returns None when there is no checkpoint; raises UsageError when the saved run's shapes
    differ from the current config's.
    """
    step = self.latest_step() if step is None else step
    if step is None:
      return None
    saved = self.manager.restore(step, args=ocp.args.Composite(
        config=ocp.args.JsonRestore())).config
    if self.config is not None and saved:
      for name in SHAPE_FIELDS:
        if saved.get(name) != getattr(self.config, name):
          raise UsageError(
              f'checkpoint {step} in {self.manager.directory} was trained with '
              f'--{name}={saved.get(name)}, this run has --{name}={getattr(self.config, name)}; '
              'use another --workdir or the same flags')
    restored = self.manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state)))
    return restored.state

  def close(self):
    self.manager.wait_until_finished()
    self.manager.close()


def abstract_like(state_shapes, sharding):
  """ShapeDtypeStructs of `state_shapes` placed with `sharding` (for restoring)."""
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding),
                      state_shapes)
