"""Trained models that ship with tfgen: sample, score, complete and export, no training.

  import tfgen
  for entry in tfgen.zoo.available():      # name, family, dataset, parameters, NLL, command
    print(entry.name, entry.test_nll_nats)
  model = tfgen.zoo.load("pixelcnn-binarized_mnist")
  images = model.sample(16)

and wherever a run directory is accepted, `zoo:NAME` names an entry:

  python score_main.py --model_dir=zoo:pixelcnn-digits
  python -m export --model_dir=zoo:vae-digits --out=/tmp/vae
  python -m export.complete_main --model=zoo:pixelcnn-digits --images=DIR
  python train_main.py --init_from=zoo:pixelcnn-binarized_mnist --dataset=...  # fine-tune

An entry is a finished `train_main.py` run directory reduced to what the tools read,
under `tfgen/zoo/entries/NAME/` and installed with the package (nothing is downloaded):

  model.keras    the trained model, float32 weights, without optimizer state
  config.json    the run's `tfgen.config.TrainConfig`
  metrics.json   what the run measured (test split, training time and steps)
  samples.png    (or samples_by_class.png) the run's sample grid
  card.json      the entry's card: the measurements of `bench/zoo_train.py --install`
                 (test NLL on the whole test split, NLL on `SUBSET_SIZE` fixed random test
                 images, for VAEs the k=5000 bound and the ELBO), the paper's figure, the
                 command that trains it, the machine and the date.

Names are MODEL-DATASET, like train_main.py's default run directories.
"""

import dataclasses
import os

from tfgen import files

PREFIX = "zoo:"
ENTRIES_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "entries")
# The fixed random test subset of every entry's card and of the zoo test: `SUBSET_SIZE`
# images drawn with `SUBSET_SEED` (the whole test split when it is smaller).
SUBSET_SIZE = 500
SUBSET_SEED = 0
# k of a VAE's importance-weighted NLL on that subset. The subset is a regression check
# (a loaded entry must give its card's figure), not the card's headline bound (k = 5000,
# measured by the bench); at k = 250 one 28x28 conv VAE took a minute of the test suite.
SUBSET_IMPORTANCE_SAMPLES = 50
# The run's pictures an entry keeps, the first that exists being its sample grid.
SAMPLE_GRIDS = ("samples.png", "samples_by_class.png", "reconstructions.png")


class ZooError(ValueError):
  """An unknown or damaged zoo entry; the message says which exist and what to do."""


@dataclasses.dataclass(frozen=True)
class Entry:
  """One zoo entry, as its card describes it.

  Attributes:
    name: MODEL-DATASET, e.g. "pixelcnn-binarized_mnist".
    family: the model name (`tfgen.models.available()`).
    dataset: what it was trained on ("binarized_mnist", "mnist_8bit", "digits").
    parameters: trainable and other weights of the model.
    test_nll_nats: negative log-likelihood per image on the whole test split (VAEs: the
      importance-weighted bound of the card); None for autoencoders, which have none.
    command: the command that trains it again (`bench/zoo_train.py`).
    path: the entry's directory (a `train_main.py` run directory).
    card: everything `card.json` records.
  """
  name: str
  family: str
  dataset: str
  parameters: int
  test_nll_nats: float | None
  command: str
  path: str
  card: dict = dataclasses.field(repr=False, compare=False)

  @property
  def config(self):
    """The run's configuration, the contents of its config.json."""
    return files.read_json(os.path.join(self.path, "config.json"), "zoo entry's configuration")


def _names():
  if not os.path.isdir(ENTRIES_DIR):
    return []
  return sorted(n for n in os.listdir(ENTRIES_DIR)
                if os.path.isfile(os.path.join(ENTRIES_DIR, n, "card.json")))


def available():
  """The entries installed with this tfgen, sorted by name: a list of `Entry`."""
  return [entry(name) for name in _names()]


def entry(name):
  """The `Entry` called `name` (with or without the "zoo:" prefix).

  Raises:
    ZooError: for a name that is not installed (the message lists those that are), or
      an entry whose card is damaged.
  """
  name = name[len(PREFIX):] if name.startswith(PREFIX) else name
  if name not in _names():
    known = ", ".join(_names()) or "none (this installation has no tfgen/zoo/entries)"
    raise ZooError(f"No zoo entry {name!r}. Installed entries: {known}. Names are "
                   "MODEL-DATASET; tfgen.zoo.available() lists them with their test NLL.")
  path = os.path.join(ENTRIES_DIR, name)
  try:
    card = files.read_json(os.path.join(path, "card.json"), "zoo entry's card")
    return Entry(name=name, family=card["family"], dataset=card["dataset"],
                 parameters=int(card["parameters"]), test_nll_nats=card["test_nll_nats"],
                 command=card["command"], path=path, card=card)
  except (OSError, ValueError, KeyError) as e:
    raise ZooError(f"The zoo entry {name!r} is damaged ({e}); reinstall tfgen.") from e


def resolve(model_dir):
  """The directory of a run given as a path or as "zoo:NAME" (any other value unchanged).

  Raises:
    ZooError: for "zoo:NAME" with a NAME that is not installed.
  """
  if isinstance(model_dir, str) and model_dir.startswith(PREFIX):
    return entry(model_dir).path
  return model_dir


def load(name):
  """The entry's trained Keras model, compiled, in float32.

  Its configuration is `entry(name).config`; `tfgen.runs.load_model("zoo:" + name)`
  returns both.

  Raises:
    ZooError: for a name that is not installed.
    tfgen.runs.RunError: for an entry whose model file cannot be loaded.
  """
  from tfgen import runs  # pylint: disable=g-import-not-at-top  # Keras, TensorFlow.
  return runs.load_model(entry(name).path)[0]


def table():
  """The entries' cards as a Markdown table (the README's): NLL, the paper's, training."""
  lines = ["| entry | parameters | test NLL (nats) | paper | training | samples |",
           "| --- | --- | --- | --- | --- | --- |"]
  for e in available():
    card, training = e.card, e.card["training"]
    nll = (f"{e.test_nll_nats:.2f}" if e.test_nll_nats is not None else
           f"none (reconstruction MSE {card['test']['reconstruction_mse']:.4f})")
    if "importance_weighted" in card:
      iw = card["importance_weighted"]
      nll += (f" (k={iw['num_importance_samples']}, {iw['images']} images; -ELBO "
              f"{iw['neg_elbo_nats']:.2f})")
    if "class_accuracy" in card:
      nll += f"; samples read as their class {card['class_accuracy']['sample_accuracy']:.0%}"
    paper = f"{card['paper']['nll_nats']:.2f}" if card.get("paper") else ""
    grid = next((g for g in SAMPLE_GRIDS if os.path.isfile(os.path.join(e.path, g))), None)
    picture = f"[grid](tfgen/zoo/entries/{e.name}/{grid})" if grid else ""
    lines.append(f"| `{e.name}` | {e.parameters:,} | {nll} | {paper} | "
                 f"{training['train_steps']:,} steps, {training['train_seconds'] / 60:.1f} "
                 f"min, {training['precision']} | {picture} |")
  return "\n".join(lines)


def subset_indices(num_images, size=SUBSET_SIZE):
  """The cards' fixed random subset of a split of `num_images`: `size` sorted indices
  drawn with `SUBSET_SEED` (all of them when the split is not larger)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  if num_images <= size:
    return np.arange(num_images)
  rng = np.random.default_rng(SUBSET_SEED)
  return np.sort(rng.choice(num_images, size, replace=False))


def subset_metrics(model, data, split="test", size=SUBSET_SIZE, batch_size=250,
                   num_importance_samples=SUBSET_IMPORTANCE_SAMPLES):
  """`model.test_metrics` on the fixed random subset (`subset_indices`) of `data`'s split.

  What a card records as "subset" and what the zoo test checks a loaded entry against:
  deterministic for a model (the VAE's importance samples are seeded per batch).

  Args:
    model: a trained tfgen model.
    data: a `tfgen.data.ImageData` with the entry's preprocessing.
    split: the split to draw from.
    size: images in the subset.
    batch_size: evaluation batch (the VAE's seeds depend on it: keep the default).
    num_importance_samples: k of a VAE's estimate (ignored by exact likelihoods).
  """
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  batches = list(data.dataset(split, 1000).as_numpy_iterator())
  elements = {key: np.concatenate([b[key] for b in batches]) for key in batches[0]}
  keep = subset_indices(len(elements["image"]), size)
  elements = {key: value[keep] for key, value in elements.items()}
  if not getattr(model, "num_classes", None):
    elements.pop("label", None)  # Data may have labels that p(x) ignores.
  dataset = tf.data.Dataset.from_tensor_slices(elements).batch(batch_size)
  metrics = model.test_metrics(dataset, num_importance_samples=num_importance_samples)
  return dict(metrics, images=int(len(keep)), seed=SUBSET_SEED,
              num_importance_samples=num_importance_samples)


__all__ = ["ENTRIES_DIR", "Entry", "PREFIX", "SAMPLE_GRIDS", "SUBSET_IMPORTANCE_SAMPLES",
           "SUBSET_SEED", "SUBSET_SIZE", "ZooError", "available", "entry", "load", "resolve",
           "subset_indices", "subset_metrics", "table"]
