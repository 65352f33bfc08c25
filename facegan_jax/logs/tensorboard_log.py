"""TensorBoard event files in WORKDIR/tensorboard/, written as training goes (--tensorboard).

The writer is tensorboardX: it writes TensorBoard's own event and summary protocol buffers,
hparams plugin included, with numpy and protobuf alone (no TensorFlow, no PyTorch), and is
the writer PyTorch's and JAX's training libraries without TensorFlow use. What it writes:

- `train/NAME`: every scalar of metrics.jsonl's log lines (losses, D's outputs, gradient
  norms, diversity, distinctness, health flags, ada_p, img/s), at its step;
- `eval/NAME`: every evaluation metric's value (--eval_every);
- `samples`: the fixed-latent grid of each sample step;
- `flags`: the run's effective flags as text, at its first step;
- the hparams plugin's summaries at the last step: the flags as hyperparameters, and as
  metrics the final value of every scalar above.

A resumed run opens a new event file whose first event purges, in TensorBoard's reading, what
earlier files logged after the restored step (the rows metrics.jsonl sets aside): the curves
go on from the checkpoint without duplicates.
"""

import os

import numpy as np

DIR = 'tensorboard'


class TensorBoardLog:
  """The run's event file, from process 0 (the others get a writer that writes nothing)."""

  def __init__(self, config, workdir, step, enabled):
    """`step`: the step the run starts at (0, or a restored checkpoint's)."""
    self.config, self.writer, self.tags = config, None, set()
    if not enabled:
      return
    # Imported here: an import cost that only training should pay (larger where torch is
    # installed, which tensorboardX imports when it can).
    from tensorboardX import SummaryWriter  # noqa: PLC0415
    # Steps after `step` from earlier runs are purged; `step`'s own lines stay (a resume does
    # not log them again).
    # Event files are named by the second they are opened in, and opened for writing anew:
    # the suffix keeps a resume within the same second from overwriting the earlier file
    # (and orders the two, as TensorBoard reads files in name order).
    self.writer = SummaryWriter(os.path.join(workdir, DIR), purge_step=step + 1 if step else None,
                                flush_secs=30, filename_suffix=f'.{step:010d}.{os.getpid()}')
    if step == 0:
      flags = config.to_flags() + f'--workdir={workdir}\n'
      self.writer.add_text('flags', '```\n' + flags + '```', 0)

  def scalars(self, step, metrics, prefix='train'):
    if self.writer:
      for name, value in metrics.items():
        self.writer.add_scalar(f'{prefix}/{name}', float(value), step)
        self.tags.add(f'{prefix}/{name}')

  def evaluation(self, step, record):
    """The values of an evaluation record (as in eval.json)."""
    self.scalars(step, {name: m['value'] for name, m in record['metrics'].items()
                        if m.get('value') is not None}, prefix='eval')

  def image(self, step, grid):
    """A uint8 (H, W, C) grid."""
    if self.writer:
      if grid.shape[-1] == 1:
        grid = np.repeat(grid, 3, axis=-1)
      self.writer.add_image('samples', grid, step, dataformats='HWC')

  def finish(self, step):
    """The hparams plugin's record of the run: its flags, and the final value of each scalar
    logged (the plugin reads the values from the scalars themselves)."""
    if not self.writer:
      return
    from tensorboardX.summary import hparams  # noqa: PLC0415
    values = {name: value for name, value in vars(self.config).items()
              if isinstance(value, (bool, int, float, str))}
    experiment, session_start, session_end = hparams(values, {tag: 0.0 for tag in self.tags})
    for summary in (experiment, session_start, session_end):
      self.writer.file_writer.add_summary(summary, step)
    self.writer.flush()

  def flush(self):
    if self.writer:
      self.writer.flush()

  def close(self):
    if self.writer:
      self.writer.close()
