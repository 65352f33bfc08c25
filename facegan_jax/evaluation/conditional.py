"""Class-conditional metrics (--condition): whether G draws the classes it is asked for.

A network that reads the classes (the class net of a labelled dataset, classifier.py; the
attribute net for a synthetic_faces attribute, face_attributes.py) reads images that G drew
for requested classes, the real subset's own classes (so fakes and reals have the same mix):

- class_accuracy: the share read as the requested class. Its ceiling: the network's accuracy
  on held-out real images;
- intra_fd: the Fréchet distance between the reals and the fakes of each class in the
  network's features, averaged over the classes (Miyato & Koyama 2018's intra-FID). Its floor:
  other real images of each class in place of the fakes;
- cas: the Classification Accuracy Score (Ravuri & Vinyals 2019), the held-out accuracy on
  real images of a classifier (classifier.py's network and recipe) trained on the fakes with
  the classes they were drawn for. Its ceiling: the same classifier trained on as many real
  images. A G that draws each class recognisably but too narrowly scores high accuracy and a
  low CAS.
"""

import dataclasses

import numpy as np

from facegan_jax.evaluation import classifier, distances

MIN_PER_CLASS = 2  # a Fréchet distance needs a covariance


def intra_fd(real_features, real_classes, fake_features, fake_classes, num_classes):
  """(mean over the classes of the per-class Fréchet distances, {class: distance}) for the
  classes with at least MIN_PER_CLASS images on both sides."""
  per_class = {}
  for k in range(num_classes):
    real, fake = real_features[real_classes == k], fake_features[fake_classes == k]
    if min(len(real), len(fake)) >= MIN_PER_CLASS:
      per_class[k] = float(distances.frechet_distance(*distances.mean_and_covariance(real),
                                                      *distances.mean_and_covariance(fake)))
  return (float(np.mean(list(per_class.values()))) if per_class else None), per_class


def classification_accuracy_score(train_images, train_classes, test_images, test_classes,
                                  num_classes, channels):
  """The accuracy on (test_images, test_classes) of a classifier trained on the others."""
  model, _ = classifier.train(train_images, train_classes, num_classes, channels,
                              held_out=False, label='Training the CAS classifier')
  _, predicted = classifier.read(model, classifier.to_input(test_images, channels))
  return float((predicted == test_classes).mean())


@dataclasses.dataclass(frozen=True)
class ConditionalMetrics:
  """The conditional metrics of uint8 fakes drawn for the real subset's classes.

  `read(images) -> (features, classes read)` is the class-reading network and `network` its
  provenance ({network, weights_sha256}).
  """
  read: object
  network: dict
  names: list  # the class names, in code order
  channels: int
  real_classes: np.ndarray  # the real subset's classes and features
  real_features: np.ndarray
  test: np.ndarray  # held-out reals (other training images) and their classes: CAS's test set
  test_classes: np.ndarray
  bounds: dict  # metric name -> its real-data floor or ceiling

  @classmethod
  def prepare(cls, read, network, ceiling, names, channels, real, real_classes, others,
              other_classes):
    """Reads the reals, and computes each metric's real-data bound: intra-FD of `others`
    (other real images, as many) against `real`, and CAS of a classifier trained on `real`,
    tested on `others`."""
    real_features, _ = read(real)
    metrics = cls(read, network, list(names), channels, np.asarray(real_classes),
                  real_features, others, np.asarray(other_classes), {})
    bounds = dict(class_accuracy=ceiling, intra_fd=None, cas=None, n_bound=len(others))
    if len(others) >= MIN_PER_CLASS:
      bounds['intra_fd'] = intra_fd(real_features, metrics.real_classes, read(others)[0],
                                    metrics.test_classes, len(names))[0]
      bounds['cas'] = classification_accuracy_score(real, real_classes, others, other_classes,
                                                    len(names), channels)
    return dataclasses.replace(metrics, bounds=bounds)

  def __call__(self, fake):
    """The three metric records of the uint8 fakes drawn for the real subset's classes."""
    k = len(self.names)
    features, read_classes = self.read(fake)
    asked = self.real_classes
    per_class_accuracy = {self.names[c]: round(float((read_classes[asked == c] == c).mean()), 4)
                          for c in range(k) if (asked == c).any()}
    mean_fd, per_class_fd = intra_fd(self.real_features, asked, features, asked, k)
    cas = (classification_accuracy_score(fake, asked, self.test, self.test_classes, k,
                                         self.channels) if len(self.test) else None)
    common = dict(self.network, n_bound=self.bounds['n_bound'])
    return dict(
        class_accuracy=dict(value=float((read_classes == asked).mean()),
                            ceiling=self.bounds['class_accuracy'], per_class=per_class_accuracy,
                            settings='share of the generated images read as the class they '
                                     'were drawn for (higher is better)', **common),
        intra_fd=dict(value=mean_fd, floor=self.bounds['intra_fd'],
                      per_class={self.names[c]: round(v, 3) for c, v in per_class_fd.items()},
                      settings='Fréchet distance per class in the network\'s features, mean '
                               f'over the classes with >= {MIN_PER_CLASS} images', **common),
        cas=dict(value=cas, ceiling=self.bounds['cas'], n_test=len(self.test),
                 settings='held-out real accuracy of a class net trained on the generated '
                          'images and the classes they were drawn for (higher is better)',
                 **common))
