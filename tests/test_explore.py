"""The latent-space figures: the interpolation and the attribute arithmetic (end to end in
test_main.py)."""

import numpy as np
import pytest

from facegan_jax import explore


def test_slerp_keeps_the_ends_and_moves_along_the_great_circle():
  a, b = np.eye(4)[0] * 3, np.eye(4)[1] * 3
  np.testing.assert_allclose(explore.slerp(a, b, 0.0), a, atol=1e-12)
  np.testing.assert_allclose(explore.slerp(a, b, 1.0), b, atol=1e-12)
  # Orthogonal ends of equal length: the midpoint is on their circle, not inside it.
  np.testing.assert_allclose(explore.slerp(a, b, 0.5), (a + b) / np.sqrt(2), atol=1e-12)
  frames = explore.slerp(a, b, np.linspace(0, 1, 7)[:, None])
  np.testing.assert_allclose(np.linalg.norm(frames, axis=-1), 3.0, atol=1e-12)
  # Parallel ends: linear.
  np.testing.assert_allclose(explore.slerp(a, 2 * a, 0.5), 1.5 * a, atol=1e-12)


def test_interpolation_rows_run_from_one_latent_to_another():
  import jax  # noqa: PLC0415
  z, ends = explore.interpolation_latents(jax.random.PRNGKey(0), 6, rows=3, frames=5)
  rows = z.reshape(3, 5, 6)
  np.testing.assert_allclose(rows[:, 0], ends[0, :, 0], rtol=1e-6)
  np.testing.assert_allclose(rows[:, -1], ends[1, :, 0], rtol=1e-6)
  assert not np.allclose(rows[:, 2], rows[:, 0])


def _arithmetic(monkeypatch, never_glasses=False, projected=None):
  """explore.attribute_arithmetic's (read-outs, figures, latents drawn) on 64 latents, with a
  generator that draws its latents as they are and an attribute reader for which latent
  coordinate 0, 1, 2 above 0 is glasses, a beard, long hair (glasses never, if asked)."""
  from facegan_jax.config import Config  # noqa: PLC0415
  from facegan_jax.data import synthetic_faces  # noqa: PLC0415
  from facegan_jax.evaluation import face_attributes  # noqa: PLC0415
  import jax  # noqa: PLC0415

  def read_images(model, z, channels):
    above = np.asarray(z)[:, :3] > 0
    hair = np.where(above[:, 2], synthetic_faces.HAIR_STYLES.index('long'),
                    synthetic_faces.HAIR_STYLES.index('short'))
    classes = dict(hair_style=hair, glasses=above[:, 0] * (not never_glasses),
                   beard=above[:, 1].astype(int))
    return None, None, tuple(classes[name] for name in face_attributes.CATEGORICAL)

  monkeypatch.setattr(face_attributes, 'load_or_train', lambda config: (None, {}))
  monkeypatch.setattr(face_attributes, 'read_images', read_images)
  latents = {}
  readouts, figures = explore.attribute_arithmetic(Config(eval_samples=64, z_dim=8), np.asarray,
                                                   jax.random.PRNGKey(0), latents, projected)
  return readouts, figures, latents


def test_latent_arithmetic_moves_faces_along_each_attributes_direction(monkeypatch):
  readouts, figures, latents = _arithmetic(monkeypatch)
  assert set(readouts) == set(figures) == {'glasses', 'beard', 'long_hair'}  # none skipped
  for i, name in enumerate(('glasses', 'beard', 'long_hair')):
    readout, pool = readouts[name], latents['arithmetic_pool']
    has = pool[:, i] > 0
    assert (readout['faces_with'], readout['faces_without']) == (has.sum(), (~has).sum())
    assert readout['share_in_pool'] == pytest.approx(has.mean(), abs=1e-4)
    # The direction: the mean latent of faces with it minus those without, but for the 8
    # faces shown (drawn from those without): along the attribute's own coordinate.
    before, direction = latents[f'{name}_before'], latents[f'{name}_direction']
    assert before.shape == (8, 8) and (before[:, i] <= 0).all()
    shown = np.flatnonzero(~has)[:8]
    rest = np.setdiff1d(np.arange(64), shown)
    np.testing.assert_allclose(direction, pool[rest][has[rest]].mean(0)
                               - pool[rest][~has[rest]].mean(0), atol=1e-6)
    assert np.argmax(np.abs(direction)) == i and direction[i] > 1
    after = latents[f'{name}_after'].reshape(3, 8, 8)
    np.testing.assert_allclose(after, before + np.array([1, 2, 3])[:, None, None] * direction,
                               atol=1e-6)
    # The shares read after adding it once, twice, three times: the faces moved past 0.
    assert readout['share_before'] == 0
    assert readout['share_after'] == {f'{k}x': np.mean(after[k - 1][:, i] > 0)
                                      for k in (1, 2, 3)}
    assert readout['share_after']['3x'] == 1
    # The figure: the faces before, then after each multiple.
    np.testing.assert_array_equal(figures[name], np.concatenate([before, *after]))


def test_latent_arithmetic_skips_an_attribute_too_few_faces_have(monkeypatch):
  readouts, figures, latents = _arithmetic(monkeypatch, never_glasses=True)
  assert readouts['glasses'] == dict(skipped='0 of 64 generated faces read as having glasses: '
                                             'too few on one side for a mean latent')
  assert 'glasses' not in figures and 'glasses_direction' not in latents
  assert set(figures) == {'beard', 'long_hair'}


def test_projected_real_faces_are_edited_along_each_direction(monkeypatch):
  """The edits of projected faces (--mode=project's latents): with a generator that draws its
  latents as they are, a real face is its latent, read as the arithmetic's pool is."""
  z = np.random.default_rng(1).normal(size=(5, 8)).astype(np.float32)
  z[:, :3] = -np.abs(z[:, :3])  # none has glasses, a beard or long hair
  faces = z.copy()
  faces[0, 0] = 1.0  # the first real face has glasses its reconstruction lost
  readouts, figures, latents = _arithmetic(monkeypatch, projected=(z, faces, np.asarray))
  for i, name in enumerate(('glasses', 'beard', 'long_hair')):
    direction = latents[f'{name}_direction']
    rows = [faces, z] + [z + k * direction for k in (1, 2, 3)]
    np.testing.assert_allclose(figures[f'edit_{name}'], np.concatenate(rows), atol=1e-6)
    real = readouts[name]['real_faces']
    assert real['count'] == 5 and real['share_reconstructed'] == 0
    assert real['share_real'] == (0.2 if name == 'glasses' else 0)
    assert real['share_after'] == {f'{k}x': pytest.approx(np.mean(rows[1 + k][:, i] > 0),
                                                          abs=1e-4) for k in (1, 2, 3)}
    assert real['share_after']['3x'] == 1


def test_explore_edits_only_projections_of_its_own_step(tmp_path, caplog):
  project = tmp_path / 'project'
  generate = lambda z, classes=None: (z, classes)
  assert explore.projected_faces(str(tmp_path), 10, generate) is None  # never projected
  project.mkdir()
  (project / 'project.json').write_text('{"step": 5}')
  np.savez(project / 'latents.npz', z=np.ones((2, 3)), targets=np.zeros((2, 4, 4, 3), np.uint8))
  caplog.set_level('WARNING')
  assert explore.projected_faces(str(tmp_path), 10, generate) is None
  assert 'holds projections by the generator of step 5, not 10: rerun --mode=project' in (
      caplog.text)
  z, targets, of_theirs = explore.projected_faces(str(tmp_path), 5, generate)
  np.testing.assert_array_equal(z, np.ones((2, 3)))
  assert targets.shape == (2, 4, 4, 3) and of_theirs is generate
  # Under --condition, their classes: as many rows of latents, each row of their classes.
  np.savez(project / 'latents.npz', z=np.ones((2, 3)), targets=np.zeros((2, 4, 4, 3), np.uint8),
           classes=np.array([4, 1]))
  _, _, of_theirs = explore.projected_faces(str(tmp_path), 5, generate)
  np.testing.assert_array_equal(of_theirs(np.zeros((6, 3)))[1], [4, 1, 4, 1, 4, 1])
