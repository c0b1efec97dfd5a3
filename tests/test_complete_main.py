"""`python -m export.complete_main`: a folder of images completed by a run, an export or
a TFLite completer, the same images from each for the same seed, and bad input as one
paragraph."""

import os
import sys

import numpy as np
import pytest
from PIL import Image

import likelihood_checks as checks
import commands
from export import complete_main
from export import export_lib
from tfgen import models

HPARAMS = {
    "pixelcnn": dict(hidden_dim=8, num_blocks=1, output_dim=8, input_kernel_size=3,
                     kernel_size=3),
    "vae": dict(latent_dim=2, hidden_dims="16"),
}
NAMES = ["a", "b", "c", "d", "e"]  # Five images: the batch-3 TFLite completer pads.


def _write_images(folder, levels, num_levels):
  folder.mkdir()
  for name, image in zip(NAMES, levels):
    pixels = np.round(image[..., 0] * 255.0 / (num_levels - 1)).astype(np.uint8)
    Image.fromarray(pixels, "L").save(folder / f"{name}.png")


@pytest.fixture(scope="module", params=["pixelcnn", "vae"])
def exported(request, tmp_path_factory):
  """(model, run dir, export dir, images dir, levels) of a 4x4 model with 4 levels."""
  root = tmp_path_factory.mktemp(request.param)
  model = checks.randomize(models.build(request.param, (4, 4, 1), 4, **HPARAMS[request.param]),
                           scale=0.5)
  run = root / "run"
  run.mkdir()
  model.save(str(run / "model.keras"))
  out = root / "export"
  export_lib.export(model, str(out), quantize=["none"], batch_size=3)
  levels = np.random.default_rng(0).integers(0, 4, (len(NAMES), 4, 4, 1))
  _write_images(root / "images", levels, 4)
  return model, run, out, root / "images", levels


def test_run_export_and_tflite_complete_a_folder_alike(exported, tmp_path):
  model, run, out, images, levels = exported
  results = {}
  for kind, path in (("run", run), ("export", out), ("tflite", out / "completer_float32.tflite")):
    results[kind] = complete_main.complete_folder(str(path), str(images), str(tmp_path / kind),
                                                  num_samples=2, seed=1)
  assert results["run"].shape == (2, len(NAMES), 4, 4, 1)
  np.testing.assert_array_equal(results["export"], results["run"])
  np.testing.assert_array_equal(results["tflite"], results["run"])
  # The top half is kept, and the two completions of an image differ somewhere.
  np.testing.assert_array_equal(results["run"][:, :, :2], np.broadcast_to(levels[:, :2],
                                                                          (2, 5, 2, 4, 1)))
  assert not np.array_equal(results["run"][0], results["run"][1])
  written = sorted(os.listdir(tmp_path / "run"))
  assert written == sorted([f"{n}-{s}.png" for n in NAMES for s in (0, 1)] + ["completions.png"])
  png = np.asarray(Image.open(tmp_path / "run" / "a-1.png"))
  np.testing.assert_array_equal(png.reshape(4, 4, 1).astype(int) * 3 // 255,
                                results["run"][1, 0])
  # Another seed, other completions.
  other = complete_main.complete_folder(str(run), str(images), str(tmp_path / "other"),
                                        num_samples=2, seed=2)
  assert not np.array_equal(other, results["run"])


def test_a_mask_folder_and_right_half(exported, tmp_path):
  model, run, _, images, levels = exported
  masks = tmp_path / "masks"
  masks.mkdir()
  top = np.zeros((4, 4), np.uint8)
  top[:2] = 255  # White = observed: the top half, as --mask=bottom_half.
  for name in NAMES:
    Image.fromarray(top, "L").save(masks / f"{name}.png")
  from_folder = complete_main.complete_folder(str(run), str(images), str(tmp_path / "f"),
                                              mask=str(masks), num_samples=1, seed=3)
  np.testing.assert_array_equal(from_folder, complete_main.complete_folder(
      str(run), str(images), str(tmp_path / "g"), num_samples=1, seed=3))
  right = complete_main.complete_folder(str(run), str(images), str(tmp_path / "r"),
                                        mask="right_half", num_samples=1, seed=3)
  np.testing.assert_array_equal(right[0, :, :, :2], levels[:, :, :2])


def test_bad_folders_masks_and_models_are_one_paragraph(exported, tmp_path):
  model, run, out, images, _ = exported
  odd = tmp_path / "odd"
  odd.mkdir()
  Image.fromarray(np.zeros((5, 4), np.uint8), "L").save(odd / "x.png")
  text = tmp_path / "text"
  text.mkdir()
  (text / "x.png").write_text("not an image")
  no_masks = tmp_path / "no_masks"
  no_masks.mkdir()
  full = tmp_path / "full"
  full.mkdir()
  for name in NAMES:
    Image.fromarray(np.full((4, 4), 255, np.uint8), "L").save(full / f"{name}.png")
  sampler = out / "sampler_float32.tflite"
  cases = [
      (dict(images_dir=str(tmp_path / "none")), "is not a folder"),
      (dict(images_dir=str(no_masks)), "holds no"),
      (dict(images_dir=str(odd)), "the model completes 4x4 images"),
      (dict(images_dir=str(text)), "is not a readable image"),
      (dict(mask=str(no_masks)), "has no mask for image 'a'"),
      (dict(mask=str(full)), "marks nothing missing"),
      (dict(mask="top_half"), "is neither bottom_half nor right_half"),
      (dict(label=1), "This model is unconditional: drop --label"),
      (dict(num_samples=0), "--num_samples must be at least 1"),
      (dict(model_path=str(sampler)), "has no 'complete' signature"),
      (dict(model_path=str(tmp_path)), "is not a train_main.py run"),
  ]
  for change, message in cases:
    args = dict(model_path=str(run), images_dir=str(images), out_dir=str(tmp_path / "out"))
    args.update(change)
    with pytest.raises(complete_main.CompletionError, match=message):
      complete_main.complete_folder(**args)


def test_a_class_conditional_run_completes_with_the_label_given(tmp_path):
  model = checks.randomize(models.build("pixelcnn", (4, 4, 1), 4, num_classes=3,
                                        **HPARAMS["pixelcnn"]))
  (tmp_path / "run").mkdir()
  model.save(str(tmp_path / "run" / "model.keras"))
  levels = np.random.default_rng(1).integers(0, 4, (len(NAMES), 4, 4, 1))
  _write_images(tmp_path / "images", levels, 4)
  args = dict(model_path=str(tmp_path / "run"), images_dir=str(tmp_path / "images"),
              out_dir=str(tmp_path / "out"), num_samples=1, seed=4)
  done = complete_main.complete_folder(label=2, **args)
  # The noise the command draws: numpy's uniform from --seed, one draw per completion.
  noise = np.random.default_rng(4).uniform(size=(1, len(NAMES), 4, 4, 1)).astype(np.float32)
  keep = np.ones(levels.shape, bool)
  keep[:, 2:] = False
  np.testing.assert_array_equal(done, model.complete(levels, keep, 1, noise=noise,
                                                     labels=np.full(len(NAMES), 2)))
  for label in (None, 3):
    with pytest.raises(complete_main.CompletionError, match=r"pass --label in \[0, 3\)"):
      complete_main.complete_folder(label=label, **args)


@pytest.mark.parametrize("exported", ["pixelcnn"], indirect=True)
def test_cli_completes_a_folder_and_errors_are_one_paragraph(exported, tmp_path):
  _, _, out, images, _ = exported
  run = lambda *args: commands.run([sys.executable, "-m", "export.complete_main", *args])
  proc = run(f"--model={out}", f"--images={images}", f"--out={tmp_path / 'done'}",
             "--num_samples=1")
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "1 completions of each of 5 images" in proc.stdout
  assert (tmp_path / "done" / "completions.png").exists()
  proc = run(f"--model={out}", f"--images={tmp_path / 'missing'}")
  assert proc.returncode == 1 and "is not a folder" in proc.stderr
  assert "Traceback" not in proc.stderr, proc.stderr
  proc = run(f"--images={images}")
  assert proc.returncode == 1 and "pass --model" in proc.stderr
