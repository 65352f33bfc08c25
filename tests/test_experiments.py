"""The paper-style flagfiles train on stand-in data the tests make.

celeba32_udacity reads a stand-in processed-celeba-small.zip from the manual directory; the
TFDS flagfiles run under tfds.testing.mock_data (random images of the real features). Each run
is cut to a couple of steps at the flagfile's own model settings, and runs what main.py runs:
the flagfile and flags parsed by main.py's flags, validated, trained (in process, on one
device).
"""

import contextlib
import dataclasses
import glob
import json
import os
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow_datasets as tfds
from flax import nnx
from PIL import Image

from facegan_jax import config as config_lib
from facegan_jax import train
from facegan_jax import validation
from facegan_jax.models import build
from tests.conftest import ROOT, main_config

SHORT = ['--num_steps=2', '--log_every=1', '--sample_every=2', '--checkpoint_every=2']


def run_flagfile(flagfile, args, caplog, mock_tfds=False):
  """Trains `--flagfile=experiments/FLAGFILE` with `args` as main.py would, on one device,
  optionally under TFDS mocking; returns the log."""
  config, workdir = main_config(f'--flagfile={os.path.join(ROOT, "experiments", flagfile)}',
                                *args, '--num_devices=1')
  validation.validate(config)
  caplog.set_level('INFO')
  mocked = (tfds.testing.mock_data(num_examples=128, policy=tfds.testing.MockPolicy.USE_CODE)
            if mock_tfds else contextlib.nullcontext())
  with mocked:
    train.train_and_evaluate(config, workdir)
  return caplog.text


def metrics_steps(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return len(f.readlines())


def test_celeba32_udacity_trains_on_the_zip(tmp_path, caplog):
  manual = tmp_path / 'manual'
  manual.mkdir()
  rng = np.random.default_rng(0)
  with zipfile.ZipFile(manual / 'processed-celeba-small.zip', 'w') as archive:
    for i in range(80):
      image = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
      path = tmp_path / 'face.jpg'
      image.save(path)
      archive.write(path, f'processed_celeba_small/celeba/{i:06d}.jpg')
  workdir = str(tmp_path / 'run')
  log = run_flagfile('celeba32_udacity.flags', SHORT + [
      f'--workdir={workdir}', f'--data_dir={tmp_path / "data"}', f'--data_manual_dir={manual}'],
      caplog)
  assert 'Starting at step 0 on 1 cpu device(s); 80 training images' in log
  assert metrics_steps(workdir) == 2
  assert os.path.exists(os.path.join(workdir, 'samples', 'step_0000002.png'))


def flagfile_lines(name):
  """The flag lines of experiments/NAME."""
  with open(os.path.join(ROOT, 'experiments', name)) as f:
    return [line.strip() for line in f if line.startswith('--')]


def test_the_diffaug_flagfile_is_the_dcgan64_one_plus_diffaugment():
  """What lets one mocked run below train both 64x64 DCGAN flagfiles' model and settings."""
  plain, diffaug = flagfile_lines('celeba64_dcgan.flags'), flagfile_lines(
      'celeba64_dcgan_diffaug.flags')
  added = ['--augment=diffaug', '--diffaug_policy=color,translation,cutout']
  assert [line for line in diffaug if line not in added and not line.startswith('--workdir=')] == [
      line for line in plain if not line.startswith('--workdir=')]
  assert all(line in diffaug for line in added)


# celeba64_dcgan_diffaug's batch of 128 at 64x64 takes seconds a step here: 16 keeps it quick.
# It trains celeba64_dcgan's model and settings plus DiffAugment (the test above).
# digits_conditional on TFDS mnist: the classes of a TFDS label feature (evaluation off: it
# would train a class net).
@pytest.mark.parametrize('flagfile, batch, extra', [
    ('mnist_mlp.flags', 64, []), ('mnist_dcgan.flags', 64, []),
    ('celeba64_dcgan_diffaug.flags', 16, []),
    ('digits_conditional.flags', 64, ['--dataset=tfds:mnist', '--eval_every=0'])])
def test_tfds_flagfiles_train_on_mocked_datasets(tmp_path, caplog, flagfile, batch, extra):
  workdir = str(tmp_path / 'run')
  log = run_flagfile(flagfile, SHORT + extra + [
      f'--workdir={workdir}', f'--data_dir={tmp_path / "data"}', f'--batch_size={batch}'],
      caplog, mock_tfds=True)
  assert '128 training images' in log
  assert metrics_steps(workdir) == 2


def test_small_faces_ada_trains_with_ada(tmp_path, data_dir, caplog):
  workdir = str(tmp_path / 'run')
  log = run_flagfile('small_faces_ada.flags', SHORT + [f'--workdir={workdir}',
                                                       f'--data_dir={data_dir}'], caplog)
  assert '1024 training images' in log
  assert metrics_steps(workdir) == 2
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    assert all('ada_p' in json.loads(line) for line in f)


@pytest.mark.parametrize('path', sorted(glob.glob(os.path.join(ROOT, 'experiments', '*.flags'))),
                         ids=os.path.basename)
def test_every_flagfile_is_a_valid_run_whose_models_build(path):
  """Each flagfile's settings pass validation and its models map latents to images of its
  resolution and images to one logit each (shapes only: the 64-pixel SNGAN is 1,024 wide)."""
  config = config_lib.Config(**config_lib.read_flagfile(path))
  validation.validate(config)
  if config.condition:  # the data would give the classes: three here
    config = dataclasses.replace(config, num_classes=3)
  classes = {} if not config.condition else dict(labels=jnp.array([0, 2]))

  def forward(z):
    g, d = build(config, nnx.Rngs(0))
    images = g(z, train=True, **classes)
    return images, d(images, train=False, **classes)  # (train: dropout would want its keys)
  images, logits = jax.eval_shape(forward, jax.ShapeDtypeStruct((2, config.z_dim), jnp.float32))
  assert images.shape == (2, config.resolution, config.resolution, config.channels)
  assert logits.shape == (2,)
