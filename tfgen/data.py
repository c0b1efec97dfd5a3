"""Image datasets as `tf.data` pipelines of integer pixel levels.

One loader serves `train_main.py`, the tests and the benchmarks:

  data = tfgen.data.load("digits")               # scikit-learn's 8x8 digits, no download
  data = tfgen.data.load("npz:../shared/data/binarized_mnist.npz")
  data = tfgen.data.load("folder:~/faces", image_size=32)
  data = tfgen.data.load("cifar10", data_dir="~/tensorflow_datasets")
  ds = data.dataset("train", batch_size=64, training=True, seed=0)

Each element is a dict {"image": uint8 [H, W, C] levels in [0, K), "label": int32 []}
("label" only where the source has class labels), batched to [B, H, W, C] / [B].

Sources (the `spec` string):
  "digits"        scikit-learn's 1,797 bundled 8x8 digits, levels 0..16, 10 classes;
                  split 80/10/10 with a fixed seed.
  "npz:PATH"      arrays of integer images (N, H, W) or (N, H, W, C). Split keys
                  `train`/`valid` (or `validation`)/`test` with optional
                  `<split>_labels`; Keras-style `x_train`/`y_train`/`x_test`/`y_test`;
                  or one array (`images` with optional `labels`, or the only array),
                  split 80/10/10 with a fixed seed.
  "folder:PATH"   image files (PNG, JPEG, BMP, GIF), either all in PATH or in one
                  subfolder per class (subfolder names become label names); split
                  80/10/10 with a fixed seed.
  NAME            any TensorFlow Datasets image dataset (mnist, binarized_mnist,
                  fashion_mnist, cifar10, lfw, ...), read from `data_dir`.

Preprocessing, in order: resize (`image_size`), binarize ("threshold" at half the
range, or "dynamic": each pixel ~ Bernoulli(level / (K - 1)), drawn anew each epoch),
or reduce the number of levels (`reduce_levels`: x -> floor(x * K' / K)), then, for
training only, random horizontal flips.

Splits: "train", "valid", "test". A source without a validation split has none (no
validation during training); a source with one array is split with a fixed seed that
does not depend on the training seed, so the test set never changes between runs.
"""

import dataclasses
import os
import socket
import zipfile

import numpy as np
import tensorflow as tf

from tfgen import config as config_lib

SPLITS = ("train", "valid", "test")
DEFAULT_SPLIT_FRACTIONS = config_lib.DEFAULT_SPLIT_FRACTIONS
# The split of single-array sources is fixed, independent of any training seed.
_SPLIT_SEED = 20160125
_IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


class DatasetUnavailableError(ValueError):
  """A dataset is neither prepared locally nor downloadable right now."""


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """What a model needs to know about a dataset.

  Attributes:
    name: the spec the dataset was loaded from.
    image_shape: `(H, W, C)` after preprocessing.
    num_levels: `K`, levels per subpixel after preprocessing.
    num_classes: number of class labels, or None for an unlabelled source.
    split_sizes: images per split, e.g. {"train": 50000, "valid": 10000, "test": 10000}.
    label_names: names of the classes, or None.
  """
  name: str
  image_shape: tuple
  num_levels: int
  num_classes: int | None
  split_sizes: dict
  label_names: tuple | None = None


@dataclasses.dataclass(frozen=True)
class Preprocessing:
  """How raw levels become model levels (see the module docstring)."""
  source_levels: int
  image_size: tuple | None = None
  binarize: str = "none"
  reduce_levels: int | None = None
  random_flip: bool = False

  @property
  def num_levels(self):
    if self.binarize != "none":
      return 2
    return self.reduce_levels or self.source_levels


class ImageData:
  """A loaded dataset: `info` and a `dataset(split, ...)` pipeline factory.

  Use `load` to make one.
  """

  def __init__(self, info, splits, preprocessing):
    # splits: {split: callable returning a tf.data.Dataset of raw elements}.
    self.info = info
    self._splits = splits
    self._prep = preprocessing

  def has_split(self, split):
    return split in self._splits

  def dataset(self, split, batch_size, *, training=False, seed=0, start_step=0,
              drop_remainder=None):
    """A batched pipeline over one split.

    Args:
      split: "train", "valid" or "test".
      batch_size: the global batch size.
      training: shuffle (seeded), repeat forever, draw dynamic binarization and flips.
        Otherwise one deterministic pass in stored order; a dynamic binarization is
        drawn once with a fixed seed, so evaluation numbers are repeatable.
      seed: seed of the shuffle order and the per-image randomness.
      start_step: number of batches to skip, to resume a training run exactly where
        it stopped. The stream is a deterministic function of `seed` and TensorFlow's
        global seed (tf.data combines the two for the shuffle); `train_lib` sets the
        global seed from the same config seed, so a resumed run sees the same stream.
      drop_remainder: drop a last partial batch (default: True when training).

    Returns:
      A `tf.data.Dataset` of {"image": uint8 [B, H, W, C], "label": int32 [B]}.

    Raises:
      ValueError: for an unknown or absent split, or a bad batch size.
    """
    if split not in SPLITS:
      raise ValueError(f"Unknown split {split!r}; choose one of {SPLITS}.")
    if split not in self._splits:
      raise ValueError(
          f"Dataset {self.info.name!r} has no {split!r} split; it has "
          f"{sorted(self._splits)}.")
    if int(batch_size) < 1:
      raise ValueError(f"batch_size must be positive, got {batch_size}.")
    if int(start_step) < 0:
      raise ValueError(f"start_step must be non-negative, got {start_step}.")
    if drop_remainder is None:
      drop_remainder = training
    ds = self._splits[split]()
    if training:
      size = self.info.split_sizes[split]
      ds = ds.shuffle(min(size, 100_000), seed=seed, reshuffle_each_iteration=True).repeat()
    # Per-image randomness keyed on the element's position in the stream, so that a
    # resumed run (skip) sees exactly the images an uninterrupted run would.
    ds = ds.enumerate()
    noise_seed = seed if training else _SPLIT_SEED
    prep = self._prep
    ds = ds.map(lambda i, el: _preprocess(el, i, noise_seed, prep, training),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(int(batch_size), drop_remainder=drop_remainder)
    if start_step:
      ds = ds.skip(int(start_step))
    return ds.prefetch(tf.data.AUTOTUNE)


def _preprocess(element, index, seed, prep, training):
  image = element["image"]  # [H, W, C] source levels
  seeds = tf.random.experimental.stateless_split(
      tf.stack([tf.cast(seed, tf.int64), index]), num=2)
  if prep.image_size is not None:
    image = tf.image.resize(tf.cast(image, tf.float32), prep.image_size, method="area",
                            antialias=True)
    image = tf.clip_by_value(tf.round(image), 0, prep.source_levels - 1)
  x = tf.cast(image, tf.float32)
  top = float(prep.source_levels - 1)
  if prep.binarize == "threshold":
    x = tf.cast(x >= top / 2.0, tf.float32)
  elif prep.binarize == "dynamic":
    u = tf.random.stateless_uniform(tf.shape(x), seed=seeds[0])
    x = tf.cast(u < x / top, tf.float32)
  elif prep.reduce_levels:
    x = tf.floor(x * prep.reduce_levels / prep.source_levels)
  if training and prep.random_flip:
    x = tf.image.stateless_random_flip_left_right(x, seed=seeds[1])
  out = {"image": tf.cast(x, tf.uint8)}
  if "label" in element:
    out["label"] = tf.cast(element["label"], tf.int32)
  return out


# ---- public entry point -------------------------------------------------------------


def load_config(data_config):
  """`load` with the arguments of a `tfgen.config.DataConfig` (a run's `config.data`)."""
  d = data_config
  return load(d.dataset, data_dir=d.data_dir, image_size=d.image_size,
              num_levels=d.num_levels, reduce_levels=d.reduce_levels, binarize=d.binarize,
              random_flip=d.random_flip, split_fractions=d.split_fractions,
              download=d.download)


def load(spec, *, data_dir=None, image_size=None, num_levels=None, reduce_levels=None,
         binarize="none", random_flip=False, split_fractions=DEFAULT_SPLIT_FRACTIONS,
         download=True):
  """Loads a dataset by spec (see the module docstring).

  Args:
    spec: "digits", "npz:PATH", "folder:PATH" or a TensorFlow Datasets name.
    data_dir: TensorFlow Datasets directory with prepared data (default: TFDS's own).
    image_size: int or `(H, W)`: resize images (required for folders of mixed sizes).
    num_levels: the number of levels K of the stored data, for npz files whose K
      cannot be inferred (inferred: 2 if the values are 0/1, else 256).
    reduce_levels: reduce the data to this many levels (e.g. 256 -> 8).
    binarize: "none", "threshold" or "dynamic".
    random_flip: flip training images horizontally at random.
    split_fractions: `(train, valid, test)` fractions for single-array sources.
    download: let TensorFlow Datasets download a dataset that is not prepared.

  Returns:
    An `ImageData`.

  Raises:
    ValueError: for a bad spec, option, file or array (the message says which and
      what to do).
    DatasetUnavailableError: for a TFDS dataset that is not prepared and cannot be
      downloaded (e.g. offline).
  """
  if binarize not in config_lib.BINARIZE:
    raise ValueError(f"binarize must be 'none', 'threshold' or 'dynamic', got {binarize!r}.")
  if binarize != "none" and reduce_levels:
    raise ValueError("Choose either binarize or reduce_levels, not both (binarizing "
                     "already reduces the data to 2 levels).")
  if isinstance(image_size, int):
    image_size = (image_size, image_size)
  if image_size is not None:
    image_size = tuple(int(s) for s in image_size)
    if len(image_size) != 2 or min(image_size) < 1:
      raise ValueError(f"image_size must be a positive int or (H, W), got {image_size}.")
  fractions = tuple(float(f) for f in split_fractions)
  if len(fractions) != 3 or min(fractions) < 0 or fractions[0] <= 0 or sum(fractions) > 1 + 1e-9:
    raise ValueError(
        f"split_fractions must be (train, valid, test) fractions, train > 0, summing to at "
        f"most 1; got {split_fractions}.")

  if num_levels is not None and (spec == "digits" or spec.startswith("folder:")):
    known = "17 levels (0..16)" if spec == "digits" else "256 levels (8-bit image files)"
    raise ValueError(
        f"num_levels is for npz: files whose number of levels cannot be inferred; {spec} "
        f"has {known}. Drop --num_levels; to train on fewer levels, pass "
        "--reduce_levels (or --binarize).")
  if spec == "digits":
    arrays, label_names, source_levels = _digits(), tuple(str(d) for d in range(10)), 17
  elif spec.startswith("npz:"):
    arrays, label_names, source_levels = _npz(os.path.expanduser(spec[4:]), num_levels)
  elif spec.startswith("folder:"):
    arrays, label_names, source_levels = _folder(os.path.expanduser(spec[7:]), image_size)
    image_size = None  # Already resized while reading.
  else:
    return _tfds(spec, data_dir, image_size, num_levels, reduce_levels, binarize,
                 random_flip, download)

  if num_levels is not None and spec.startswith("npz:"):
    source_levels = int(num_levels)
  # Checked before a single array is split: splitting would hide a length mismatch
  # (extra labels silently dropped, missing ones an IndexError).
  for split, (images, labels) in arrays.items():
    _check_labels_length(spec, split, images, labels)
  labelled = sorted(split for split, (_, labels) in arrays.items() if labels is not None)
  if labelled and len(labelled) != len(arrays):
    raise ValueError(
        f"{spec}: labels are given for the {labelled} split(s) but not for "
        f"{sorted(set(arrays) - set(labelled))}; give labels for every split or for none.")
  if "valid" not in arrays and "test" not in arrays:
    arrays = _split_single(arrays["train"], fractions)
  prep = _make_preprocessing(source_levels, image_size, binarize, reduce_levels, random_flip)
  splits, sizes = {}, {}
  for split, (images, labels) in arrays.items():
    _check_array(spec, split, images, labels, source_levels)
    element = {"image": images.astype(np.uint8)}
    if labels is not None:
      element["label"] = labels.astype(np.int32)
    splits[split] = (lambda el=element: tf.data.Dataset.from_tensor_slices(el))
    sizes[split] = len(images)
  first = next(iter(arrays.values()))
  shape = (image_size or first[0].shape[1:3]) + (first[0].shape[3],)
  has_labels = first[1] is not None
  num_classes = None
  if has_labels:
    num_classes = len(label_names) if label_names else int(
        max(int(lab.max()) for _, lab in arrays.values() if len(lab)) + 1)
  info = DatasetInfo(spec, tuple(int(s) for s in shape), prep.num_levels, num_classes,
                     sizes, label_names if has_labels else None)
  return ImageData(info, splits, prep)


def _make_preprocessing(source_levels, image_size, binarize, reduce_levels, random_flip):
  if reduce_levels is not None:
    reduce_levels = int(reduce_levels)
    if not 2 <= reduce_levels <= source_levels:
      raise ValueError(
          f"reduce_levels must be between 2 and the data's {source_levels} levels, got "
          f"{reduce_levels}.")
    if reduce_levels == source_levels:
      reduce_levels = None
  return Preprocessing(int(source_levels), image_size, binarize, reduce_levels,
                       bool(random_flip))


# ---- in-memory sources --------------------------------------------------------------


def _digits():
  from sklearn import datasets as sk_datasets  # Imported here: only this source needs it.
  digits = sk_datasets.load_digits()
  images = digits.images.astype(np.uint8)[..., None]  # [1797, 8, 8, 1], levels 0..16
  return {"train": (images, digits.target.astype(np.int32))}


def _split_single(pair, fractions):
  images, labels = pair
  n = len(images)
  order = np.random.default_rng(_SPLIT_SEED).permutation(n)
  n_valid, n_test = int(round(fractions[1] * n)), int(round(fractions[2] * n))
  n_train = n - n_valid - n_test if sum(fractions) > 1 - 1e-9 else int(round(fractions[0] * n))
  parts = {"train": order[:n_train], "valid": order[n_train:n_train + n_valid],
           "test": order[n_train + n_valid:n_train + n_valid + n_test]}
  return {split: (images[idx], None if labels is None else labels[idx])
          for split, idx in parts.items() if len(idx) or split == "train"}


def _as_images(spec, key, array):
  if array.ndim == 3:
    array = array[..., None]
  if array.ndim != 4:
    raise ValueError(
        f"{spec}: array {key!r} has shape {array.shape}; images must be (N, H, W) or "
        "(N, H, W, C).")
  if array.shape[1] in (1, 3, 4) and array.shape[-1] not in (1, 3, 4):
    # (N, C, H, W), as PyTorch stores images, would load as images of height C with W
    # channels, and a model would train on them without complaint.
    raise ValueError(
        f"{spec}: array {key!r} has shape {array.shape}, which looks channels-first (N, C, "
        "H, W); tfgen reads (N, H, W, C). Save np.transpose(x, (0, 2, 3, 1)) instead.")
  if array.dtype == bool:
    array = array.astype(np.uint8)
  if not np.issubdtype(array.dtype, np.integer):
    raise ValueError(
        f"{spec}: array {key!r} has dtype {array.dtype}; images must hold integer pixel "
        "levels (e.g. uint8). Convert floats in [0, 1] with np.round(x * 255).astype(np.uint8).")
  return array


def _npz(path, num_levels):
  spec = f"npz:{path}"
  if not os.path.isfile(path):
    raise ValueError(
        f"{spec}: no such file. Pass the path of an existing .npz file, e.g. "
        "npz:../shared/data/binarized_mnist.npz.")
  if not zipfile.is_zipfile(path):  # np.load would advise allow_pickle for any text.
    raise ValueError(
        f"{spec}: is not a NumPy .npz archive (an .npz is a zip of .npy arrays, as "
        "written by np.savez or np.savez_compressed). Save the arrays with np.savez, or "
        "use folder:PATH for a directory of image files.")
  try:
    with np.load(path, allow_pickle=False) as f:
      data = {k: f[k] for k in f.files}
    odd = sorted(k for k, v in data.items() if not isinstance(v, np.ndarray))
    if odd:  # NpzFile returns the raw bytes of a member that is not an .npy array.
      raise ValueError(f"members {odd} are not .npy arrays")
  except Exception as e:  # A truncated or non-npz file: numpy raises several kinds.
    raise ValueError(f"{spec}: cannot be read as a NumPy .npz archive ({e}).") from e

  def labels_for(*keys):
    for key in keys:
      if key in data:
        return np.asarray(data[key]).reshape(-1)
    return None

  arrays = {}
  if any(k in data for k in ("train", "valid", "validation", "test")):
    for split, keys in (("train", ("train",)), ("valid", ("valid", "validation")),
                        ("test", ("test",))):
      for key in keys:
        if key in data:
          arrays[split] = (_as_images(spec, key, data[key]),
                           labels_for(f"{key}_labels", f"{key}_label"))
  elif "x_train" in data:
    for split, x, y in (("train", "x_train", "y_train"), ("valid", "x_valid", "y_valid"),
                        ("test", "x_test", "y_test")):
      if x in data:
        arrays[split] = (_as_images(spec, x, data[x]), labels_for(y))
  elif "images" in data or len(data) == 1:
    key = "images" if "images" in data else next(iter(data))
    arrays["train"] = (_as_images(spec, key, data[key]), labels_for("labels", "label"))
  else:
    raise ValueError(
        f"{spec}: cannot tell which arrays are images; it holds {sorted(data)}. Use split "
        "keys train/valid/test (labels in train_labels, ...), x_train/y_train/x_test/y_test, "
        "or images/labels.")
  if "train" not in arrays:
    raise ValueError(f"{spec}: has no training split; it holds {sorted(data)}.")
  channels = {a[0].shape[1:] for a in arrays.values()}
  if len(channels) > 1:
    raise ValueError(f"{spec}: splits have different image shapes {sorted(channels)}.")
  if num_levels is None:
    # default=0: all-empty arrays get the clear "split is empty" error later.
    top = max((int(a[0].max()) for a in arrays.values() if a[0].size), default=0)
    if top > 255:
      raise ValueError(
          f"{spec}: values reach {top}; tfgen models at most 256 levels. Re-quantize the "
          "data to 0..255 (or pass num_levels if the data has a different range).")
    num_levels = 2 if top <= 1 else 256
  elif not 2 <= int(num_levels) <= 256:
    raise ValueError(f"num_levels must be between 2 and 256, got {num_levels}.")
  return arrays, None, int(num_levels)


def _folder(path, image_size):
  from PIL import Image  # Imported here: only this source needs it.
  spec = f"folder:{path}"
  if not os.path.isdir(path):
    raise ValueError(f"{spec}: no such directory. Pass a folder of image files, or one with "
                     "a subfolder of images per class.")

  def images_in(folder):
    return sorted(os.path.join(folder, f) for f in os.listdir(folder)
                  if f.lower().endswith(_IMAGE_EXTENSIONS))

  classes = sorted(d for d in os.listdir(path) if os.path.isdir(os.path.join(path, d))
                   and images_in(os.path.join(path, d)))
  top_files = images_in(path)
  if classes and top_files:
    raise ValueError(f"{spec}: holds both image files and class subfolders; use one layout.")
  files = [(f, None) for f in top_files] + [
      (f, k) for k, c in enumerate(classes) for f in images_in(os.path.join(path, c))]
  if not files:
    raise ValueError(f"{spec}: holds no image files ({', '.join(_IMAGE_EXTENSIONS)}).")
  pictures = []
  for f, _ in files:
    try:
      with Image.open(f) as im:
        im.load()
        pictures.append(im.copy())
    except Exception as e:  # PIL raises many kinds for unreadable files.
      raise ValueError(f"{spec}: cannot read image {f} ({e}).") from e
  # All 1-bit (black and white): levels 0/1, as for 0/1 npz data, not 0/255 of 256.
  binary = all(p.mode == "1" for p in pictures)
  pictures = [_eight_bit(p) for p in pictures]
  gray = all(p.mode in ("1", "L") or _is_gray(p) for p in pictures)
  mode = "L" if gray else "RGB"
  sizes = {p.size for p in pictures}
  if image_size is None and len(sizes) > 1:
    raise ValueError(f"{spec}: images have different sizes ({len(sizes)} distinct); pass "
                     "image_size (--image_size) to resize them all.")
  arrays = []
  for p in pictures:
    p = p.convert(mode)
    if image_size is not None:
      p = _center_crop_resize(p, image_size)
    a = np.asarray(p, np.uint8)
    if binary:
      a = (a > 127).astype(np.uint8)  # A resize's grey edges go to the nearer level.
    arrays.append(a[..., None] if a.ndim == 2 else a)
  images = np.stack(arrays)
  labels = np.array([k for _, k in files], np.int32) if classes else None
  return {"train": (images, labels)}, tuple(classes) if classes else None, 2 if binary else 256


def _eight_bit(picture):
  """A 16-bit grey PNG as 8-bit grey, scaled (round(v * 255 / 65535)) as
  `tf.io.decode_png(..., dtype=tf.uint8)` does: PIL's convert("L") clips it at 255
  instead, which turns most of such an image white."""
  from PIL import Image
  if not (picture.mode.startswith("I;16") or picture.mode == "I"):
    return picture
  a = np.asarray(picture, np.int64)
  if picture.mode.startswith("I;16") or a.max() > 255:  # mode "I": 16-bit or 8-bit levels.
    a = np.round(np.clip(a, 0, 65535) * (255 / 65535))
  return Image.fromarray(a.astype(np.uint8), "L")


def _is_gray(picture):
  r, g, b = picture.convert("RGB").split()
  return r.tobytes() == g.tobytes() == b.tobytes()


def _center_crop_resize(picture, size):
  from PIL import Image
  h, w = size
  width, height = picture.size
  scale = min(width / w, height / h)
  cw, ch = int(round(w * scale)), int(round(h * scale))
  left, top = (width - cw) // 2, (height - ch) // 2
  return picture.crop((left, top, left + cw, top + ch)).resize((w, h), Image.Resampling.LANCZOS)


def _check_labels_length(spec, split, images, labels):
  if labels is not None and len(labels) != len(images):
    raise ValueError(f"{spec}: the {split!r} split has {len(images)} images but "
                     f"{len(labels)} labels.")


def _check_array(spec, split, images, labels, num_levels):
  if len(images) == 0:
    raise ValueError(f"{spec}: the {split!r} split is empty; give it images or drop it.")
  lo, hi = int(images.min()), int(images.max())
  if lo < 0 or hi >= num_levels:
    raise ValueError(
        f"{spec}: the {split!r} split has values in [{lo}, {hi}], outside the {num_levels} "
        f"levels [0, {num_levels - 1}]. Pass the data's number of levels (num_levels / "
        "--num_levels) or re-quantize the data.")
  if labels is not None:  # Lengths were checked in `load`, before any split.
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0:
      raise ValueError(f"{spec}: labels of the {split!r} split must be non-negative integers.")


# ---- TensorFlow Datasets ------------------------------------------------------------


def _offline_message(name, data_dir, reason):
  return (
      f"Dataset {name!r} is not available: {reason} TensorFlow Datasets looked for "
      f"prepared data in {data_dir!r}. Prepare it on a machine with internet access "
      f"(python -c \"import tensorflow_datasets as tfds; tfds.load('{name}')\") and copy "
      "the tensorflow_datasets folder here, then pass --data_dir=THAT_FOLDER; or use data "
      "that needs no download: --dataset=digits (scikit-learn's bundled 8x8 digits), "
      "--dataset=npz:PATH (arrays of uint8 images, e.g. npz:../shared/data/binarized_mnist.npz) "
      "or --dataset=folder:PATH (a folder of image files).")


def _network_available(host="storage.googleapis.com"):
  # A DNS lookup only: offline it fails at once, where TFDS's own download retries
  # for minutes before giving up.
  try:
    socket.getaddrinfo(host, 443)
    return True
  except OSError:
    return False


def _tfds(name, data_dir, image_size, num_levels, reduce_levels, binarize, random_flip,
          download):
  import tensorflow_datasets as tfds  # Imported here: slow, and only this source needs it.
  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except Exception as e:  # DatasetNotFoundError and friends.
    raise ValueError(
        f"Unknown dataset {name!r}. Use digits, npz:PATH, folder:PATH or a TensorFlow "
        "Datasets image dataset such as mnist, binarized_mnist, fashion_mnist, cifar10 or "
        f"lfw. ({str(e).splitlines()[0]})") from e
  where = builder.data_dir
  if not builder.is_prepared():
    if not download:
      raise DatasetUnavailableError(_offline_message(name, where, "it is not prepared and "
                                                     "downloading is turned off."))
    if not _network_available():
      raise DatasetUnavailableError(_offline_message(name, where, "it is not prepared and "
                                                     "this machine has no network."))
    try:
      builder.download_and_prepare()
    except Exception as e:  # Network and extraction errors of many kinds.
      raise DatasetUnavailableError(_offline_message(
          name, where, f"downloading it failed ({type(e).__name__}).")) from e
  features = builder.info.features
  if "image" not in features:
    raise ValueError(f"Dataset {name!r} has no 'image' feature; tfgen needs image datasets.")
  shape = tuple(features["image"].shape)
  if None in shape[:2] and image_size is None:
    raise ValueError(f"Dataset {name!r} has images of varying size; pass image_size.")
  label = features["label"] if "label" in features and hasattr(features["label"],
                                                                 "num_classes") else None
  available = dict(builder.info.splits)
  split_names = {"train": "train", "valid": "validation" if "validation" in available else None,
                 "test": "test" if "test" in available else None}
  if split_names["test"] is None:  # e.g. lfw: one split, sliced 80/10/10.
    split_names = {"train": "train[:80%]", "valid": "train[80%:90%]", "test": "train[90%:]"}
  split_names = {k: v for k, v in split_names.items() if v}

  def reader(tfds_split):
    def make():
      ds = builder.as_dataset(split=tfds_split, shuffle_files=False)
      return ds.map(lambda ex: {"image": ex["image"], "label": ex["label"]} if label is not None
                    else {"image": ex["image"]})
    return make

  if num_levels is None:
    num_levels = 2 if name.split(":")[0] == "binarized_mnist" else 256
  prep = _make_preprocessing(num_levels, image_size, binarize, reduce_levels, random_flip)
  sizes = {k: int(builder.info.splits[v].num_examples) for k, v in split_names.items()}
  out_shape = (image_size or shape[:2]) + (shape[2],)
  info = DatasetInfo(name, tuple(int(s) for s in out_shape), prep.num_levels,
                     label.num_classes if label is not None else None, sizes,
                     tuple(label.names) if label is not None else None)
  return ImageData(info, {k: reader(v) for k, v in split_names.items()}, prep)
