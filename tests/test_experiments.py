"""The paper-style flagfiles train through main.py on stand-in data the tests make.

celeba32_udacity reads a stand-in processed-celeba-small.zip from the manual directory; the
two TFDS flagfiles run under tfds.testing.mock_data (random images of the real features).
Each run is cut to a couple of steps at the flagfile's own model settings.
"""

import glob
import json
import os
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from PIL import Image

from facegan_jax import config as config_lib
from facegan_jax.models import build
from tests.conftest import ROOT, run_python

SHORT = ['--num_steps=2', '--log_every=1', '--sample_every=2', '--checkpoint_every=2']


def run_main(flagfile, args, mock_tfds=False):
  """main.py with `flagfile` and `args` in a fresh process, optionally under TFDS mocking."""
  argv = ['main.py', f'--flagfile={os.path.join(ROOT, "experiments", flagfile)}'] + args
  code = f'''
import sys
import tensorflow_datasets as tfds
from absl import app
import main
sys.argv = {argv!r}
def run():
  try:
    app.run(main.main)
  except SystemExit as e:
    assert not e.code, e.code
if {mock_tfds}:
  with tfds.testing.mock_data(num_examples=128, policy=tfds.testing.MockPolicy.USE_CODE):
    run()
else:
  run()
print('done')
'''
  return run_python(code, timeout=300)


def metrics_steps(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return len(f.readlines())


def test_celeba32_udacity_trains_on_the_zip(tmp_path):
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
  out = run_main('celeba32_udacity.flags', SHORT + [
      f'--workdir={workdir}', f'--data_dir={tmp_path / "data"}', f'--data_manual_dir={manual}'])
  assert out.strip().endswith('done')
  assert 'Starting at step 0 on 1 cpu device(s); 80 training images' in out
  assert metrics_steps(workdir) == 2
  assert os.path.exists(os.path.join(workdir, 'samples', 'step_0000002.png'))


# celeba64_dcgan's batch of 128 at 64x64 takes seconds a step here: 16 keeps it quick.
@pytest.mark.parametrize('flagfile, batch', [('mnist_mlp.flags', 64),
                                             ('mnist_dcgan.flags', 64),
                                             ('celeba64_dcgan.flags', 16),
                                             ('celeba64_dcgan_diffaug.flags', 16)])
def test_tfds_flagfiles_train_on_mocked_datasets(tmp_path, flagfile, batch):
  workdir = str(tmp_path / 'run')
  out = run_main(flagfile, SHORT + [f'--workdir={workdir}', f'--data_dir={tmp_path / "data"}',
                                    f'--batch_size={batch}'], mock_tfds=True)
  assert '128 training images' in out
  assert metrics_steps(workdir) == 2


def test_small_faces_ada_trains_with_ada(tmp_path, data_dir):
  workdir = str(tmp_path / 'run')
  out = run_main('small_faces_ada.flags', SHORT + [f'--workdir={workdir}',
                                                   f'--data_dir={data_dir}',
                                                   '--lr_decay_start=1'])
  assert '1024 training images' in out
  assert metrics_steps(workdir) == 2
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    assert all('ada_p' in json.loads(line) for line in f)


@pytest.mark.parametrize('path', sorted(glob.glob(os.path.join(ROOT, 'experiments', '*.flags'))),
                         ids=os.path.basename)
def test_every_flagfile_is_a_valid_run_whose_models_build(path):
  """Each flagfile's settings pass validation and its models map latents to images of its
  resolution and images to one logit each (shapes only: the 64-pixel SNGAN is 1,024 wide)."""
  config = config_lib.Config(**config_lib.read_flagfile(path))
  config_lib.validate(config)

  def forward(z):
    g, d = build(config, nnx.Rngs(0))
    images = g(z, train=True)
    return images, d(images, train=False)  # (train: dropout would want its keys)
  images, logits = jax.eval_shape(forward, jax.ShapeDtypeStruct((2, config.z_dim), jnp.float32))
  assert images.shape == (2, config.resolution, config.resolution, config.channels)
  assert logits.shape == (2,)
