"""Exports tfgen models to SavedModel and TFLite: `python -m export --help`.

The library is `export.export_lib`; `export.sample_main` runs an exported `.tflite`
sampler with LiteRT and needs neither TensorFlow nor tfgen.
"""
