"""Benchmark data helpers shared by the bench/ scripts."""

import datetime
import json
import os
import platform
import sys
import tempfile
import time

import numpy as np


def subset_npz(path, num_test, seed=0):
  """A temporary copy of a split npz: its train split and `num_test` random test images.

  No validation split, so a run under a short budget spends it on training, and a
  random test subset, because stored test splits may be sorted by class.

  Returns:
    The path of the new npz file.
  """
  with np.load(path) as f:
    train, test = f["train"], f["test"]
  keep = np.sort(np.random.default_rng(seed).choice(len(test), num_test, replace=False))
  out = os.path.join(tempfile.mkdtemp(prefix="tfgen_bench_data_"), "subset.npz")
  np.savez(out, train=train, test=test[keep])
  return out


def _scaled_arrays(data, split):
  """Images `[N, H*W*C]` scaled to [0, 1] and labels `[N]` of one split."""
  images, labels = [], []
  for element in data.dataset(split, 1000):
    images.append(element["image"].numpy())
    labels.append(element["label"].numpy())
  images = np.concatenate(images)
  scale = 1.0 / (data.info.num_levels - 1)
  return images.reshape(len(images), -1) * scale, np.concatenate(labels)


def class_accuracy(model, data, per_class, seed):
  """Does a class-conditional `model` draw the class it is asked for?

  Trains a classifier (multinomial logistic regression on the pixels) on `data`'s real
  labelled training images, samples `per_class` images of every class with `seed`, and
  classifies them. A model that ignores its label scores chance.

  Returns:
    A dict: sample_accuracy (fraction classified as the class they were drawn for), per
    class, the classifier's predictions per class, its accuracy on the real test images,
    chance, and the seconds spent.
  """
  from sklearn import linear_model  # pylint: disable=g-import-not-at-top
  train_x, train_y = _scaled_arrays(data, "train")
  test_x, test_y = _scaled_arrays(data, "test")
  start = time.process_time()
  classifier = linear_model.LogisticRegression(max_iter=300, C=0.1)
  classifier.fit(train_x, train_y)
  classifier_seconds = time.process_time() - start
  test_accuracy = float((classifier.predict(test_x) == test_y).mean())
  num_classes = model.num_classes
  labels = np.repeat(np.arange(num_classes), per_class)
  start = time.perf_counter()
  samples = model.sample(len(labels), seed=seed, labels=labels).numpy()
  sample_seconds = time.perf_counter() - start
  scale = 1.0 / (model.num_levels - 1)
  predicted = classifier.predict(samples.reshape(len(samples), -1) * scale)
  hits = predicted == labels
  return {
      "classifier": "logistic regression on pixels (C=0.1)",
      "classifier_test_accuracy": round(test_accuracy, 4),
      "classifier_cpu_seconds": round(classifier_seconds, 1),
      "per_class": per_class,
      "sample_seconds": round(sample_seconds, 2),
      "sample_accuracy": round(float(hits.mean()), 4),
      "chance": round(1.0 / num_classes, 4),
      "sample_accuracy_per_class": [round(float(hits[labels == k].mean()), 2)
                                    for k in range(num_classes)],
      "sample_predictions": np.bincount(predicted, minlength=num_classes).tolist(),
  }


def machine():
  """The CPU (model, the AVX-512/bf16 flags that decide speed), cores, GPUs, the
  TensorFlow and Keras versions and the date: what a results file must say."""
  import keras  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tfgen import precision  # pylint: disable=g-import-not-at-top
  cpu = platform.processor()
  try:
    with open("/proc/cpuinfo") as f:
      cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
  except (OSError, StopIteration):
    pass
  cpu_flags = precision.cpu_flags()
  extras = [f for f in ("avx512f",) + precision.BF16_CPU_FLAGS if f in cpu_flags]
  return {"cpu": cpu, "cpu_flags": extras, "cores": os.cpu_count(),
          "gpus": [d.name for d in tf.config.list_physical_devices("GPU")],
          "tensorflow": tf.__version__, "keras": keras.__version__,
          "date": datetime.date.today().isoformat()}


def define_out_flag():
  """`--out`: the results file (JSON lines) that `append_result` adds each result to."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  return flags.DEFINE_string("out", None, "Also append each JSON result, with the machine, "
                             "date and command, as a line of this file.")


def report(result, out, indent=None):
  """Prints `result` as JSON and, when `out` (the `--out` flag) names a file, appends it
  there with `append_result`."""
  print(json.dumps(result, indent=indent), flush=True)
  if out:
    append_result(out, result)


def command():
  """The command line that is running, as a results file records it."""
  return " ".join(["python3"] + [os.path.relpath(sys.argv[0])] + sys.argv[1:])


def append_result(path, result):
  """Appends `result` with the machine and the command line as one JSON line to `path`."""
  record = dict(result, machine=machine(), command=command())
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "a") as f:
    f.write(json.dumps(record) + "\n")
