"""python -m export --model_dir=DIR --out=OUT: SavedModel and TFLite samplers of a run.

Flags only; the work is `export.export_lib.export`.
"""

import sys

from absl import app
from absl import flags

from tfgen import cli

_MODEL_DIR = flags.DEFINE_string(
    "model_dir", None, "A finished train_main.py run directory, or zoo:NAME (a trained model "
    "that ships with tfgen; tfgen.zoo.available() lists them).")
_OUT = flags.DEFINE_string("out", None, "Output directory.")
_FORMATS = flags.DEFINE_list("formats", ["saved_model", "tflite"],
                             "Comma-separated: saved_model, tflite.")
_QUANTIZE = flags.DEFINE_list("quantize", ["none", "float16", "dynamic_int8"],
                              "TFLite variants, comma-separated: none (float32), float16, "
                              "dynamic_int8.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 16, "Fixed batch of the TFLite samplers.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if not _MODEL_DIR.value or not _OUT.value:
    print("\nError: pass --model_dir (a finished train_main.py run) and --out (where to "
          "write the export).", file=sys.stderr)
    return 1
  from export import export_lib  # Imported after flag parsing: TensorFlow is slow.
  try:
    meta = export_lib.export_run(_MODEL_DIR.value, _OUT.value, formats=_FORMATS.value,
                                 quantize=_QUANTIZE.value, batch_size=_BATCH_SIZE.value,
                                 verbose=True)
  except export_lib.ExportError as e:
    print(f"\nError: {e}", file=sys.stderr)
    return 1
  print(f"\nWrote {_OUT.value}:")
  if "saved_model" in meta:
    print(f"  saved_model/  signatures: {', '.join(meta['saved_model']['signatures'])}")
  for q, info in meta.get("tflite", {}).items():
    print(f"  {info['file']}  ({q}, {info['bytes']:,} bytes)")
  print("  metadata.json, README.md")
  return 0


if __name__ == "__main__":
  cli.run(main)
