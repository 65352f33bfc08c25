"""Where a run starts: its own newest checkpoint, another run's weights, or a fresh state."""

import os

from facegan_jax import config as config_lib
from facegan_jax import mesh as mesh_lib
from facegan_jax import state as state_lib
from facegan_jax.checkpoint.manager import Checkpoints
from facegan_jax.errors import UsageError


def restore_or_init(config, ckpts, mesh):
  """The state to start from, and where it came from. In this order:

  1. the newest undamaged checkpoint in the workdir (`ckpts`; resume: the whole state);
  2. else --init_checkpoint (a run's workdir, its checkpoints/ or one step in it): its weights,
     BatchNorm statistics and EMA generator, with fresh optimizers, step 0 and this run's seed;
  3. else a fresh state from --seed.
  """
  replicated = mesh_lib.replicated(mesh)
  abstract = state_lib.abstract_state(config, replicated)
  state = ckpts.restore(abstract, fixed=config_lib.fixed_on_resume())
  if state is not None:
    return state, f'Resuming at step {int(state.step)}'
  fresh = state_lib.fresh_state(config, replicated)
  if not config.init_checkpoint:
    return fresh, 'Starting at step 0'
  directory, step = checkpoint_location(config.init_checkpoint)
  source = Checkpoints(directory, config=config, read_only=True)
  loaded = source.restore(abstract, step=step, what='--init_checkpoint')
  source.close()
  if loaded is None:
    raise UsageError(f'--init_checkpoint={config.init_checkpoint}: no undamaged checkpoint in '
                     f'{directory}')
  state = fresh.replace(g_params=loaded.g_params, g_stats=loaded.g_stats,
                        d_params=loaded.d_params, d_stats=loaded.d_stats,
                        ema_params=loaded.ema_params)
  return state, (f'Starting at step 0 from the weights of step {int(loaded.step)} in '
                 f'{directory}')


def checkpoint_location(path):
  """(checkpoints directory, step or None for the newest) named by --init_checkpoint."""
  path = os.path.abspath(path)
  if os.path.basename(path).isdigit() and os.path.isdir(path):
    return os.path.dirname(path), int(os.path.basename(path))
  if os.path.isdir(os.path.join(path, 'checkpoints')):
    return os.path.join(path, 'checkpoints'), None
  if os.path.isdir(path):
    return path, None
  raise UsageError(f'--init_checkpoint={path} does not exist')
