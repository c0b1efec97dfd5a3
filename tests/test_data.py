"""Tests of tfgen.data: sources, preprocessing, pipelines, errors. No model training.

Small .npz files and PNG folders are written under `tmp_path`; the real files in
`../shared/data` are read when present (skipped otherwise); TensorFlow Datasets is
exercised offline only (no download is ever attempted).
"""

import os

import keras
import numpy as np
import pytest
from PIL import Image

from conftest import SHARED_DATA
from tfgen import data

# ---- helpers ------------------------------------------------------------------------


def _npz(tmp_path, name="d.npz", **arrays):
  path = tmp_path / name
  np.savez(path, **arrays)
  return f"npz:{path}"


def _collect(ds):
  """All batches of a finite dataset, concatenated: {"image": ..., "label": ...}."""
  batches = [{k: v.numpy() for k, v in b.items()} for b in ds]
  return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}


def _take(ds, n):
  return [{k: v.numpy() for k, v in b.items()} for b in ds.take(n)]


def _id_images(n, h=2, w=3):
  """n images whose pixel [0, 0] is the image's id; columns differ (not mirror-symmetric)."""
  x = np.zeros((n, h, w), np.uint8)
  x[:, :, 0] = np.arange(n)[:, None]
  x[:, :, 1:] = np.arange(1, w)[None, None, :] * 60 + 100
  return x


def _ids(batch):
  return batch["image"][:, 0, 0, 0].tolist()


def _save_png(path, array):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(np.asarray(array, np.uint8)).save(path)


# ---- digits -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits():
  return data.load("digits")


def test_digits_info(digits):
  info = digits.info
  assert info.name == "digits"
  assert info.image_shape == (8, 8, 1)
  assert info.num_levels == 17
  assert info.num_classes == 10
  assert info.label_names == tuple(str(d) for d in range(10))
  assert info.split_sizes == {"train": 1437, "valid": 180, "test": 180}
  assert sum(info.split_sizes.values()) == 1797
  assert all(digits.has_split(s) for s in data.SPLITS)


def test_digits_elements(digits):
  batch = _take(digits.dataset("train", 32, training=True, seed=0), 1)[0]
  assert batch["image"].dtype == np.uint8 and batch["image"].shape == (32, 8, 8, 1)
  assert batch["label"].dtype == np.int32 and batch["label"].shape == (32,)
  test = _collect(digits.dataset("test", 64))
  assert test["image"].shape == (180, 8, 8, 1)
  assert test["image"].min() >= 0 and test["image"].max() == 16
  assert set(test["label"].tolist()) <= set(range(10))
  assert len(set(test["label"].tolist())) >= 8  # A random 10%, not one class.


def test_digits_split_fixed_and_complete(digits):
  from sklearn import datasets as sk_datasets
  before = {s: _collect(digits.dataset(s, 500)) for s in ("valid", "test")}
  keras.utils.set_random_seed(999)
  np.random.seed(7)
  again = data.load("digits")
  for s in ("valid", "test"):
    after = _collect(again.dataset(s, 500, seed=5))
    np.testing.assert_array_equal(after["image"], before[s]["image"])
    np.testing.assert_array_equal(after["label"], before[s]["label"])
  # The three splits partition the 1,797 images (same label counts as the whole set).
  labels = np.concatenate([_collect(digits.dataset(s, 500))["label"] for s in data.SPLITS])
  np.testing.assert_array_equal(np.bincount(labels),
                                np.bincount(sk_datasets.load_digits().target))


# ---- npz sources --------------------------------------------------------------------


def test_npz_split_keys_with_labels(tmp_path):
  rng = np.random.default_rng(0)
  tr, va, te = (rng.integers(0, 256, (n, 4, 5), dtype=np.uint8) for n in (6, 3, 2))
  spec = _npz(tmp_path, train=tr, train_labels=np.arange(6) % 3, valid=va,
              valid_labels=np.array([0, 1, 2]), test=te, test_labels=np.array([4, 1]))
  d = data.load(spec)
  assert d.info.split_sizes == {"train": 6, "valid": 3, "test": 2}
  assert d.info.image_shape == (4, 5, 1)
  assert d.info.num_levels == 256
  assert d.info.num_classes == 5  # max label 4, + 1
  assert d.info.label_names is None
  for split, x, y in (("valid", va, [0, 1, 2]), ("test", te, [4, 1])):
    got = _collect(d.dataset(split, 10))
    np.testing.assert_array_equal(got["image"], x[..., None])
    assert got["label"].tolist() == y


def test_npz_split_keys_without_labels_and_validation_key(tmp_path):
  tr = np.ones((5, 3, 3), np.uint8)
  va = np.zeros((2, 3, 3), np.uint8)
  d = data.load(_npz(tmp_path, train=tr, validation=va))
  assert d.info.split_sizes == {"train": 5, "valid": 2}
  assert d.info.num_classes is None and d.info.label_names is None
  assert d.info.num_levels == 2
  assert not d.has_split("test")
  got = _collect(d.dataset("valid", 4))
  assert set(got) == {"image"}  # No "label" key for an unlabelled source.
  np.testing.assert_array_equal(got["image"], va[..., None])


def test_npz_validation_labels(tmp_path):
  d = data.load(_npz(tmp_path, train=np.zeros((4, 2, 2), np.uint8), train_labels=np.zeros(4, np.int64),
                     validation=np.ones((2, 2, 2), np.uint8),
                     validation_labels=np.array([3, 1])))
  assert _collect(d.dataset("valid", 2))["label"].tolist() == [3, 1]


def test_npz_keras_style(tmp_path):
  rng = np.random.default_rng(1)
  x_train = rng.integers(0, 256, (7, 6, 6, 3), dtype=np.uint8)
  x_test = rng.integers(0, 256, (3, 6, 6, 3), dtype=np.uint8)
  d = data.load(_npz(tmp_path, x_train=x_train, y_train=np.arange(7).reshape(7, 1) % 10,
                     x_test=x_test, y_test=np.array([9, 8, 7], np.uint8)))
  assert d.info.split_sizes == {"train": 7, "test": 3}
  assert not d.has_split("valid")  # No validation split: none is made up.
  assert d.info.image_shape == (6, 6, 3)
  assert d.info.num_classes == 10
  got = _collect(d.dataset("test", 2))
  np.testing.assert_array_equal(got["image"], x_test)
  assert got["label"].tolist() == [9, 8, 7]
  assert got["label"].dtype == np.int32


def test_npz_single_images_labels_split_80_10_10_fixed(tmp_path):
  n = 50
  images = _id_images(n)
  labels = np.arange(n) % 4
  spec = _npz(tmp_path, images=images, labels=labels)
  d = data.load(spec)
  assert d.info.split_sizes == {"train": 40, "valid": 5, "test": 5}
  assert d.info.num_classes == 4
  parts = {s: _collect(d.dataset(s, 64)) for s in data.SPLITS}
  ids = {s: _ids(parts[s]) for s in data.SPLITS}
  assert sorted(sum(ids.values(), [])) == list(range(n))  # A partition of all images.
  assert ids["train"] != sorted(ids["train"])  # Permuted, not the first 80%.
  for s in data.SPLITS:  # Labels travel with their images.
    assert parts[s]["label"].tolist() == [i % 4 for i in ids[s]]
  # Fixed: independent of global and numpy seeds and of the training seed.
  keras.utils.set_random_seed(4321)
  np.random.seed(3)
  d2 = data.load(spec)
  for s in ("valid", "test"):
    assert _ids(_collect(d2.dataset(s, 64, seed=17))) == ids[s]


def test_npz_single_unnamed_array_and_custom_fractions(tmp_path):
  spec = _npz(tmp_path, whatever=_id_images(20))
  d = data.load(spec)
  assert d.info.split_sizes == {"train": 16, "valid": 2, "test": 2}
  assert d.info.num_classes is None
  d = data.load(spec, split_fractions=(0.5, 0.25, 0.25))
  assert d.info.split_sizes == {"train": 10, "valid": 5, "test": 5}
  d = data.load(spec, split_fractions=(1.0, 0.0, 0.0))
  assert d.info.split_sizes == {"train": 20}
  assert not d.has_split("valid") and not d.has_split("test")


@pytest.mark.parametrize("shape,expected", [((4, 5, 6), (5, 6, 1)), ((4, 5, 6, 1), (5, 6, 1)),
                                            ((4, 5, 6, 3), (5, 6, 3))])
def test_npz_ranks(tmp_path, shape, expected):
  x = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
  d = data.load(_npz(tmp_path, train=x, test=x))
  assert d.info.image_shape == expected
  got = _collect(d.dataset("test", 4))["image"]
  assert got.shape == (4,) + expected
  np.testing.assert_array_equal(got, x.reshape((4,) + expected))


@pytest.mark.parametrize("values,dtype,levels", [
    ([0, 1], np.uint8, 2), ([0, 0], np.uint8, 2), ([0, 1], np.int64, 2), ([0, 1], bool, 2),
    ([0, 2], np.uint8, 256), ([3, 255], np.uint8, 256), ([0, 200], np.int32, 256)])
def test_npz_infers_num_levels(tmp_path, values, dtype, levels):
  x = np.resize(np.array(values, dtype), (4, 3, 3))
  d = data.load(_npz(tmp_path, images=x))
  assert d.info.num_levels == levels


def test_npz_explicit_num_levels(tmp_path):
  x = np.resize(np.arange(17, dtype=np.uint8), (10, 4, 4))
  d = data.load(_npz(tmp_path, train=x, test=x), num_levels=17)
  assert d.info.num_levels == 17
  np.testing.assert_array_equal(_collect(d.dataset("test", 10))["image"], x[..., None])
  # Explicit K overrides the inference (0/1 data declared as 256 levels).
  d = data.load(_npz(tmp_path, "b.npz", images=np.resize(np.uint8([0, 1]), (10, 2, 2))),
                num_levels=256)
  assert d.info.num_levels == 256


# ---- the real files ------------------------------------------------------------------


def _shared(name):
  path = os.path.join(SHARED_DATA, name)
  if not os.path.isfile(path):
    pytest.skip(f"{path} is absent")
  return path


def test_real_binarized_mnist():
  d = data.load("npz:" + _shared("binarized_mnist.npz"))
  info = d.info
  assert info.split_sizes == {"train": 50000, "valid": 10000, "test": 10000}
  assert info.num_levels == 2
  assert info.image_shape == (28, 28, 1)
  assert info.num_classes is None and info.label_names is None
  batch = _take(d.dataset("test", 64), 1)[0]
  assert set(batch) == {"image"}
  assert batch["image"].dtype == np.uint8 and batch["image"].shape == (64, 28, 28, 1)
  assert set(np.unique(batch["image"]).tolist()) == {0, 1}


def test_real_mnist_test():
  d = data.load("npz:" + _shared("mnist_test.npz"))
  info = d.info
  assert info.split_sizes == {"train": 8000, "valid": 1000, "test": 1000}
  assert info.num_classes == 10
  assert info.num_levels == 256
  assert info.image_shape == (28, 28, 1)
  test = _collect(d.dataset("test", 500))
  assert test["image"].shape == (1000, 28, 28, 1) and test["image"].max() > 200
  assert test["label"].dtype == np.int32
  assert set(test["label"].tolist()) == set(range(10))


# ---- folder source ------------------------------------------------------------------


def test_folder_flat_grayscale(tmp_path):
  for i in range(10):
    _save_png(tmp_path / "imgs" / f"{i:02d}.png", np.full((5, 7), i * 20))
  (tmp_path / "imgs" / "notes.txt").write_text("not an image")
  d = data.load(f"folder:{tmp_path / 'imgs'}")
  assert d.info.image_shape == (5, 7, 1)
  assert d.info.num_levels == 256
  assert d.info.num_classes is None and d.info.label_names is None
  assert d.info.split_sizes == {"train": 8, "valid": 1, "test": 1}
  values = []
  for s in data.SPLITS:
    got = _collect(d.dataset(s, 16))
    assert set(got) == {"image"}
    values += got["image"][:, 0, 0, 0].tolist()
  assert sorted(values) == [i * 20 for i in range(10)]


def test_folder_class_subfolders_colour(tmp_path):
  root = tmp_path / "pets"
  colours = {"b_cat": (200, 10, 30), "a_dog": (10, 150, 250)}
  for name, rgb in colours.items():
    for i in range(5):
      _save_png(root / name / f"{i}.png", np.broadcast_to(np.uint8(rgb), (6, 4, 3)))
  os.makedirs(root / "empty_class")  # Ignored: no images.
  d = data.load(f"folder:{root}")
  assert d.info.label_names == ("a_dog", "b_cat")
  assert d.info.num_classes == 2
  assert d.info.image_shape == (6, 4, 3)
  assert sum(d.info.split_sizes.values()) == 10
  names = d.info.label_names
  for s in data.SPLITS:
    got = _collect(d.dataset(s, 16))
    for image, label in zip(got["image"], got["label"]):
      assert tuple(image[0, 0]) == colours[names[label]]


def test_folder_gray_rgb_files_become_one_channel(tmp_path):
  for i in range(4):
    _save_png(tmp_path / "g" / f"{i}.png", np.full((3, 3, 3), 40 * i))  # RGB, r == g == b.
  d = data.load(f"folder:{tmp_path / 'g'}")
  assert d.info.image_shape == (3, 3, 1)


def test_folder_16_bit_pngs_are_scaled_to_8_bits(tmp_path):
  levels = np.array([[0, 257, 32896], [65535, 1000, 65278]], np.uint16)
  os.makedirs(tmp_path / "deep")
  for i in range(3):
    Image.fromarray(levels).save(tmp_path / "deep" / f"{i}.png")  # 16-bit grey PNG
  d = data.load(f"folder:{tmp_path / 'deep'}", split_fractions=(1.0, 0.0, 0.0))
  assert d.info.num_levels == 256
  got = _collect(d.dataset("train", 8))["image"]
  # round(v / 257); clipping, PIL's own conversion, gives [[0, 255, 255], [255, 255, 255]].
  np.testing.assert_array_equal(got[0, ..., 0], [[0, 1, 128], [255, 4, 254]])


def test_folder_1_bit_images_have_two_levels(tmp_path):
  rng = np.random.default_rng(0)
  os.makedirs(tmp_path / "bw")
  bits = rng.integers(0, 2, (4, 5, 6)).astype(np.uint8)
  for i, b in enumerate(bits):
    Image.fromarray(b * 255).convert("1").save(tmp_path / "bw" / f"{i}.png")
  d = data.load(f"folder:{tmp_path / 'bw'}", split_fractions=(1.0, 0.0, 0.0))
  assert d.info.num_levels == 2 and d.info.image_shape == (5, 6, 1)
  got = _collect(d.dataset("train", 8))["image"][..., 0].reshape(4, -1)
  # The same images, in any order: each pixel's values across them agree.
  np.testing.assert_array_equal(np.sort(got, 0), np.sort(bits.reshape(4, -1), 0))
  resized = data.load(f"folder:{tmp_path / 'bw'}", image_size=3, split_fractions=(1.0, 0.0, 0.0))
  assert set(np.unique(_collect(resized.dataset("train", 8))["image"])) <= {0, 1}
  # One 8-bit grey picture among them: all are read with 256 levels.
  _save_png(tmp_path / "bw" / "grey.png", np.full((5, 6), 128))
  assert data.load(f"folder:{tmp_path / 'bw'}").info.num_levels == 256


def test_folder_mixed_sizes(tmp_path):
  root = tmp_path / "mixed"
  _save_png(root / "a.png", np.full((8, 8), 100))
  _save_png(root / "b.png", np.full((12, 6), 100))
  _save_png(root / "c.png", np.full((5, 9), 100))
  with pytest.raises(ValueError, match="different sizes.*image_size"):
    data.load(f"folder:{root}")
  d = data.load(f"folder:{root}", image_size=4)
  assert d.info.image_shape == (4, 4, 1)
  got = _collect(d.dataset("train", 8))["image"]
  assert got.shape == (3, 4, 4, 1)
  np.testing.assert_array_equal(got, 100)  # Constant images stay constant.
  d = data.load(f"folder:{root}", image_size=(2, 5))
  assert d.info.image_shape == (2, 5, 1)
  assert _collect(d.dataset("train", 8))["image"].shape == (3, 2, 5, 1)


# ---- preprocessing ------------------------------------------------------------------


@pytest.fixture
def ramp(tmp_path):
  """All 256 levels, one 16x16 image per split, evaluated in stored order."""
  x = np.arange(256, dtype=np.uint8).reshape(1, 16, 16)
  return _npz(tmp_path, "ramp.npz", train=np.repeat(x, 4, 0), test=x), x[0, ..., None]


def test_binarize_threshold(ramp):
  spec, x = ramp
  d = data.load(spec, binarize="threshold")
  assert d.info.num_levels == 2
  got = _collect(d.dataset("test", 1))["image"][0]
  assert set(np.unique(got).tolist()) == {0, 1}
  np.testing.assert_array_equal(got, (x >= 255 / 2).astype(np.uint8))


def test_binarize_threshold_digits():
  d = data.load("digits", binarize="threshold")
  raw = data.load("digits")
  assert d.info.num_levels == 2 and d.info.image_shape == (8, 8, 1)
  got = _collect(d.dataset("test", 200))["image"]
  want = _collect(raw.dataset("test", 200))["image"] >= 16 / 2
  np.testing.assert_array_equal(got, want.astype(np.uint8))


def test_binarize_dynamic(tmp_path):
  n = 8
  x = np.full((n, 16, 16), 128, np.uint8)
  x[:, 0, :] = 0  # Level 0 is always 0 ...
  x[:, 1, :] = 255  # ... and the top level always 1.
  d = data.load(_npz(tmp_path, train=x, test=x), binarize="dynamic")
  assert d.info.num_levels == 2
  # Evaluation: repeatable across calls and seeds.
  e1 = _collect(d.dataset("test", n))["image"]
  e2 = _collect(d.dataset("test", n, seed=99))["image"]
  np.testing.assert_array_equal(e1, e2)
  assert set(np.unique(e1).tolist()) == {0, 1}
  np.testing.assert_array_equal(e1[:, 0], 0)
  np.testing.assert_array_equal(e1[:, 1], 1)
  assert 0.4 < e1[:, 2:].mean() < 0.6  # p = 128 / 255.
  assert not np.array_equal(e1[0], e1[1])  # Independent per image.
  # Training: fresh draws each epoch and per seed (all images identical, so order is moot).
  ep = _take(d.dataset("train", n, training=True, seed=0), 2)
  assert set(np.unique(ep[0]["image"]).tolist()) == {0, 1}
  assert not np.array_equal(ep[0]["image"], ep[1]["image"])
  other = _take(d.dataset("train", n, training=True, seed=1), 1)[0]
  assert not np.array_equal(ep[0]["image"], other["image"])
  again = _take(d.dataset("train", n, training=True, seed=0), 2)
  np.testing.assert_array_equal(again[1]["image"], ep[1]["image"])


def test_reduce_levels(ramp):
  spec, x = ramp
  d = data.load(spec, reduce_levels=8)
  assert d.info.num_levels == 8
  got = _collect(d.dataset("test", 1))["image"][0]
  np.testing.assert_array_equal(got, np.floor(x.astype(int) * 8 / 256).astype(np.uint8))
  assert got.max() == 7
  # Digits 17 -> 4 levels.
  d = data.load("digits", reduce_levels=4)
  assert d.info.num_levels == 4
  got = _collect(d.dataset("valid", 200))["image"]
  raw = _collect(data.load("digits").dataset("valid", 200))["image"]
  np.testing.assert_array_equal(got, (raw.astype(int) * 4) // 17)
  # Reducing to the data's own K is a no-op.
  assert data.load(spec, reduce_levels=256).info.num_levels == 256


def test_random_flip(tmp_path):
  n = 16
  x = _id_images(n, h=2, w=4)
  mirrors = x[:, :, ::-1]
  d = data.load(_npz(tmp_path, train=x, test=x), random_flip=True)
  # Evaluation: never flipped, stored order.
  np.testing.assert_array_equal(_collect(d.dataset("test", n))["image"], x[..., None])
  # Training: each image is the original or its exact mirror; both occur.
  flipped = kept = 0
  for batch in _take(d.dataset("train", 8, training=True, seed=0), 8):
    for image in batch["image"][..., 0]:
      originals = [i for i in range(n) if np.array_equal(image, x[i])]
      mirrored = [i for i in range(n) if np.array_equal(image, mirrors[i])]
      assert len(originals) + len(mirrored) == 1
      kept += len(originals)
      flipped += len(mirrored)
  assert flipped > 10 and kept > 10
  # Without random_flip, training never flips.
  d = data.load(_npz(tmp_path, "b.npz", train=x, test=x))
  for batch in _take(d.dataset("train", 8, training=True, seed=0), 4):
    for image in batch["image"][..., 0]:
      assert any(np.array_equal(image, x[i]) for i in range(n))


def test_image_size_resize(ramp, tmp_path):
  spec, _ = ramp
  d = data.load(spec, image_size=8)
  assert d.info.image_shape == (8, 8, 1)
  got = _collect(d.dataset("test", 1))["image"]
  assert got.shape == (1, 8, 8, 1)
  assert got.max() <= 255
  d = data.load(spec, image_size=(4, 2), binarize="threshold")
  assert d.info.image_shape == (4, 2, 1) and d.info.num_levels == 2
  got = _collect(d.dataset("test", 1))["image"]
  assert got.shape == (1, 4, 2, 1) and set(np.unique(got).tolist()) <= {0, 1}
  const = _npz(tmp_path, "c.npz", train=np.full((2, 8, 8, 3), 77, np.uint8),
               test=np.full((2, 8, 8, 3), 77, np.uint8))
  got = _collect(data.load(const, image_size=(3, 5)).dataset("test", 2))["image"]
  assert got.shape == (2, 3, 5, 3)
  np.testing.assert_array_equal(got, 77)


# ---- pipeline -----------------------------------------------------------------------


@pytest.fixture
def ids12(tmp_path):
  """12 training images and 10 test images identified by pixel [0, 0]."""
  x = _id_images(12)
  return data.load(_npz(tmp_path, "ids.npz", train=x, train_labels=np.arange(12),
                        test=_id_images(10), test_labels=np.arange(10)))


def test_batch_size_and_drop_remainder(ids12):
  sizes = [len(b["label"]) for b in _take(ids12.dataset("test", 3), 100)]
  assert sizes == [3, 3, 3, 1]  # Evaluation keeps the partial batch.
  sizes = [len(b["label"]) for b in _take(ids12.dataset("test", 3, drop_remainder=True), 100)]
  assert sizes == [3, 3, 3]
  train = _take(ids12.dataset("train", 5, training=True), 7)
  assert [len(b["label"]) for b in train] == [5] * 7
  assert train[0]["image"].shape == (5, 2, 3, 1)
  assert ids12.dataset("train", 5, training=True).element_spec["image"].shape[0] == 5


def test_evaluation_one_pass_in_stored_order(ids12):
  batches = _take(ids12.dataset("test", 4, training=False, seed=3), 100)
  assert len(batches) == 3
  assert sum((_ids(b) for b in batches), []) == list(range(10))
  assert np.concatenate([b["label"] for b in batches]).tolist() == list(range(10))


def test_training_shuffles_and_repeats(ids12):
  batches = _take(ids12.dataset("train", 4, training=True, seed=0), 9)  # 3 epochs.
  assert len(batches) == 9
  ids = sum((_ids(b) for b in batches), [])
  epochs = [ids[i:i + 12] for i in range(0, 36, 12)]
  for epoch in epochs:
    assert sorted(epoch) == list(range(12))  # Each epoch is a permutation.
  assert epochs[0] != list(range(12))  # Shuffled.
  assert epochs[0] != epochs[1] or epochs[1] != epochs[2]  # Reshuffled each epoch.
  for b in batches:  # Labels stay with their images.
    assert b["label"].tolist() == _ids(b)


def test_same_seed_same_stream_different_seed_different_order(ids12):
  def stream(seed):
    return sum((_ids(b) for b in _take(ids12.dataset("train", 4, training=True, seed=seed),
                                        6)), [])
  a = stream(0)
  assert stream(0) == a
  assert stream(1) != a


def test_start_step_resumes_the_stream(tmp_path):
  n = 12
  x = _id_images(n)
  x[:, 1, :] = 128  # Row 1 is dynamically binarized.
  d = data.load(_npz(tmp_path, train=x, train_labels=np.arange(n)), num_levels=256,
                binarize="dynamic", random_flip=True, split_fractions=(1.0, 0.0, 0.0))
  # Binarizing changes the id pixel; use the label to identify images instead.
  full = _take(d.dataset("train", 5, training=True, seed=7), 10)
  for k in (1, 3, 7):
    resumed = _take(d.dataset("train", 5, training=True, seed=7, start_step=k), 10 - k)
    assert len(resumed) == 10 - k
    for a, b in zip(full[k:], resumed):
      np.testing.assert_array_equal(a["label"], b["label"])
      np.testing.assert_array_equal(a["image"], b["image"])
  # And it is not trivially equal to the unskipped stream.
  assert not all(np.array_equal(a["label"], b["label"]) for a, b in zip(full[:7], full[3:]))


# ---- bad input ----------------------------------------------------------------------


def test_missing_npz_file(tmp_path):
  with pytest.raises(ValueError, match="no such file"):
    data.load(f"npz:{tmp_path / 'nope.npz'}")


def test_corrupt_npz_file(tmp_path):
  path = tmp_path / "bad.npz"
  path.write_bytes(b"\x00garbage, not a zip archive" * 10)
  with pytest.raises(ValueError, match="is not a NumPy .npz archive"):
    data.load(f"npz:{path}")
  # A zip that is no npz (a member that is not .npy) is a read error.
  import zipfile
  with zipfile.ZipFile(path, "w") as z:
    z.writestr("images.npy", b"not an array")
  with pytest.raises(ValueError, match="cannot be read as a NumPy .npz"):
    data.load(f"npz:{path}")


def test_float_arrays(tmp_path):
  with pytest.raises(ValueError, match="dtype float32.*integer"):
    data.load(_npz(tmp_path, images=np.zeros((4, 3, 3), np.float32)))


@pytest.mark.parametrize("shape", [(4, 3), (4,), (2, 3, 3, 1, 1)])
def test_wrong_rank(tmp_path, shape):
  with pytest.raises(ValueError, match=r"\(N, H, W\) or \(N, H, W, C\)"):
    data.load(_npz(tmp_path, images=np.zeros(shape, np.uint8)))


@pytest.mark.parametrize("shape", [(4, 1, 5, 6), (4, 3, 6, 5)])
def test_channels_first_arrays(tmp_path, shape):
  # Read as given they would be images of height 1 or 3 with 6 or 5 channels.
  with pytest.raises(ValueError, match=r"looks channels-first.*np.transpose\(x, \(0, 2, 3, 1\)\)"):
    data.load(_npz(tmp_path, images=np.zeros(shape, np.uint8)))


def test_values_out_of_range_for_num_levels(tmp_path):
  x = np.resize(np.uint8([0, 5]), (4, 3, 3))
  with pytest.raises(ValueError, match=r"values in \[0, 5\], outside the 4 levels"):
    data.load(_npz(tmp_path, images=x), num_levels=4)
  with pytest.raises(ValueError, match="outside the 2 levels"):
    data.load(_npz(tmp_path, "neg.npz", images=np.resize(np.int8([-1, 1]), (4, 3, 3))),
              num_levels=2)
  with pytest.raises(ValueError, match="num_levels must be between 2 and 256"):
    data.load(_npz(tmp_path, "c.npz", images=x), num_levels=1)


def test_values_above_255_without_num_levels(tmp_path):
  x = np.resize(np.uint16([0, 300]), (4, 3, 3))
  with pytest.raises(ValueError, match="values reach 300"):
    data.load(_npz(tmp_path, images=x))


def test_empty_split(tmp_path):
  with pytest.raises(ValueError, match="'test' split is empty"):
    data.load(_npz(tmp_path, train=np.zeros((4, 3, 3), np.uint8),
                   test=np.zeros((0, 3, 3), np.uint8)))
  with pytest.raises(ValueError, match="'train' split is empty"):
    data.load(_npz(tmp_path, "e.npz", images=np.zeros((0, 3, 3), np.uint8)))


def test_labels_length_mismatch(tmp_path):
  x = np.zeros((4, 3, 3), np.uint8)
  with pytest.raises(ValueError, match="'train' split has 4 images but 3 labels"):
    data.load(_npz(tmp_path, train=x, train_labels=np.arange(3), test=x,
                   test_labels=np.arange(4)))
  # Single arrays are checked before they are split (too few and too many labels).
  for name, k in (("few.npz", 9), ("many.npz", 12)):
    with pytest.raises(ValueError, match=f"10 images but {k} labels"):
      data.load(_npz(tmp_path, name, images=np.zeros((10, 3, 3), np.uint8),
                     labels=np.arange(k)))


def test_labels_for_some_splits_only(tmp_path):
  x = np.zeros((4, 3, 3), np.uint8)
  with pytest.raises(ValueError, match=r"labels are given for the \['train'\].*\['test'\]"):
    data.load(_npz(tmp_path, train=x, train_labels=np.arange(4), test=x))


def test_bad_labels(tmp_path):
  x = np.zeros((4, 3, 3), np.uint8)
  with pytest.raises(ValueError, match="non-negative integers"):
    data.load(_npz(tmp_path, images=x, labels=np.array([0.5, 1, 2, 3])))
  with pytest.raises(ValueError, match="non-negative integers"):
    data.load(_npz(tmp_path, "n.npz", train=x, train_labels=np.array([0, -1, 2, 3])))


def test_npz_unrecognizable_keys(tmp_path):
  x = np.zeros((4, 3, 3), np.uint8)
  with pytest.raises(ValueError, match=r"cannot tell which arrays are images.*\['a', 'b'\]"):
    data.load(_npz(tmp_path, a=x, b=x))
  with pytest.raises(ValueError, match="no training split"):
    data.load(_npz(tmp_path, "t.npz", valid=x, test=x))
  with pytest.raises(ValueError, match="different image shapes"):
    data.load(_npz(tmp_path, "s.npz", train=x, test=np.zeros((4, 3, 4), np.uint8)))


def test_missing_folder(tmp_path):
  with pytest.raises(ValueError, match="no such directory"):
    data.load(f"folder:{tmp_path / 'nowhere'}")


def test_empty_folder(tmp_path):
  (tmp_path / "empty").mkdir()
  (tmp_path / "empty" / "readme.txt").write_text("no images here")
  with pytest.raises(ValueError, match="holds no image files"):
    data.load(f"folder:{tmp_path / 'empty'}")


def test_folder_mixed_layout_and_unreadable_image(tmp_path):
  _save_png(tmp_path / "m" / "top.png", np.zeros((3, 3)))
  _save_png(tmp_path / "m" / "cls" / "a.png", np.zeros((3, 3)))
  with pytest.raises(ValueError, match="both image files and class subfolders"):
    data.load(f"folder:{tmp_path / 'm'}")
  (tmp_path / "u").mkdir()
  (tmp_path / "u" / "broken.png").write_bytes(b"not a png")
  with pytest.raises(ValueError, match="cannot read image"):
    data.load(f"folder:{tmp_path / 'u'}")


def test_bad_preprocessing_options():
  with pytest.raises(ValueError, match="binarize must be 'none', 'threshold' or 'dynamic'"):
    data.load("digits", binarize="otsu")
  with pytest.raises(ValueError, match="either binarize or reduce_levels"):
    data.load("digits", binarize="threshold", reduce_levels=4)
  for bad in (1, 0, 18):
    with pytest.raises(ValueError, match="reduce_levels must be between 2 and the data's 17"):
      data.load("digits", reduce_levels=bad)
  with pytest.raises(ValueError, match="image_size must be"):
    data.load("digits", image_size=(0, 4))


def test_bad_split_and_batch_size(digits, tmp_path):
  with pytest.raises(ValueError, match="Unknown split 'validation'"):
    digits.dataset("validation", 4)
  d = data.load(_npz(tmp_path, x_train=np.zeros((4, 3, 3), np.uint8),
                     x_test=np.zeros((2, 3, 3), np.uint8)))
  with pytest.raises(ValueError, match=r"has no 'valid' split; it has \['test', 'train'\]"):
    d.dataset("valid", 4)
  for bad in (0, -2):
    with pytest.raises(ValueError, match="batch_size must be positive"):
      digits.dataset("train", bad)
  with pytest.raises(ValueError, match="start_step must be non-negative"):
    digits.dataset("train", 4, training=True, start_step=-1)


@pytest.mark.parametrize("fractions", [(0.8, 0.1), (0.0, 0.5, 0.5), (0.8, -0.1, 0.3),
                                       (0.8, 0.2, 0.2)])
def test_bad_split_fractions(fractions):
  with pytest.raises(ValueError, match="split_fractions must be"):
    data.load("digits", split_fractions=fractions)


# ---- TensorFlow Datasets, offline -----------------------------------------------------


def test_tfds_not_prepared_no_download(tmp_path):
  with pytest.raises(data.DatasetUnavailableError) as err:
    data.load("mnist", data_dir=str(tmp_path), download=False)
  assert isinstance(err.value, ValueError)
  message = str(err.value)
  for part in ("'mnist'", str(tmp_path), "downloading is turned off", "digits", "npz:",
               "folder:", "--data_dir"):
    assert part in message, part


def test_tfds_not_prepared_no_network(tmp_path, monkeypatch):
  monkeypatch.setattr(data, "_network_available", lambda *a, **k: False)
  with pytest.raises(data.DatasetUnavailableError, match="no network") as err:
    data.load("fashion_mnist", data_dir=str(tmp_path), download=True)
  assert "'fashion_mnist'" in str(err.value) and str(tmp_path) in str(err.value)


def test_tfds_unknown_name(tmp_path):
  with pytest.raises(ValueError, match="Unknown dataset 'no_such_dataset_xyz'"):
    data.load("no_such_dataset_xyz", data_dir=str(tmp_path), download=False)


def test_tfds_reading_path_with_mock_data(tmp_path):
  tfds = pytest.importorskip("tensorflow_datasets")
  # `tfds.testing.mock_data()` on its own does not work here: the pip package of
  # tensorflow_datasets ships no `testing/metadata` folder, so mock_data falls back to
  # MockPolicy.USE_CODE, where the builder reports is_prepared() == False (tfgen would
  # then try to download) and `info.splits` is empty (split sizes unknown). So write
  # mnist's metadata (features from the builder's code, made-up split sizes) to a
  # temporary folder and point mock_data at it; it then fakes the examples.
  try:
    builder = tfds.builder("mnist", data_dir=str(tmp_path))
    builder.info.set_splits(tfds.core.SplitDict([
        tfds.core.SplitInfo(name=name, shard_lengths=[n], num_bytes=0)
        for name, n in (("train", 24), ("test", 12))]))
    os.makedirs(builder.data_dir)
    builder.info.write_to_directory(builder.data_dir)
  except Exception as e:  # pylint: disable=broad-except  # API drift in TFDS.
    pytest.skip(f"cannot write mock mnist metadata with this TFDS version: {e!r}")
  with tfds.testing.mock_data(num_examples=12, data_dir=str(tmp_path)):
    d = data.load("mnist")
    info = d.info
    assert info.image_shape == (28, 28, 1)
    assert info.num_levels == 256
    assert info.num_classes == 10
    assert info.label_names == tuple(str(i) for i in range(10))
    assert info.split_sizes == {"train": 24, "test": 12}
    assert not d.has_split("valid")
    batch = _take(d.dataset("train", 4, training=True, seed=0), 1)[0]
    assert batch["image"].dtype == np.uint8 and batch["image"].shape == (4, 28, 28, 1)
    assert batch["label"].dtype == np.int32 and batch["label"].shape == (4,)
    assert batch["label"].min() >= 0 and batch["label"].max() < 10
    # Preprocessing applies to TFDS sources too.
    binary = data.load("mnist", binarize="threshold")
    assert binary.info.num_levels == 2
    images = _collect(binary.dataset("test", 5))["image"]
    assert images.shape[1:] == (28, 28, 1) and set(np.unique(images).tolist()) <= {0, 1}


if __name__ == "__main__":
  import sys
  sys.exit(pytest.main([__file__, "-q"]))
