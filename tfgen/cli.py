"""What every tfgen command shares: a quiet start, `--help` that exits 0, error paragraphs.

The commands (`train_main.py`, `score_main.py`, `python -m export`) call `run(main)`
instead of `absl.app.run(main)` (`export.sample_main` runs without tfgen installed,
so it keeps absl's).
Importing TensorFlow prints C++ start-up lines (oneDNN, CUDA stubs, "All log messages
before absl::InitializeLog()") and, without a GPU, an E-level "failed call to
cuInit": noise the user did not cause, printed before the line they need. `run`
keeps them out; `TF_CPP_MIN_LOG_LEVEL` set by the user is respected.
"""

import contextlib
import os
import re
import sys

HELP_FLAGS = ("--help", "-h", "-?", "--helpshort")


def quiet_environment():
  """Environment defaults for a quiet TensorFlow; call before TensorFlow is imported."""
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  os.environ.setdefault("KERAS_BACKEND", "tensorflow")


@contextlib.contextmanager
def _stderr_to_devnull():
  """Sends file descriptor 2 (where C++ libraries log) to /dev/null for a while."""
  sys.stderr.flush()
  saved = os.dup(2)
  devnull = os.open(os.devnull, os.O_WRONLY)
  try:
    os.dup2(devnull, 2)
    yield
  finally:
    sys.stderr.flush()
    os.dup2(saved, 2)
    os.close(saved)
    os.close(devnull)


def import_tensorflow():
  """Imports TensorFlow (and TFP, Keras) without their start-up lines on stderr.

  An import error still shows: the exception is raised after stderr is restored.
  """
  quiet_environment()
  if "tensorflow" not in sys.modules:
    with _stderr_to_devnull():
      import tensorflow as tf  # pylint: disable=g-import-not-at-top
      import tensorflow_probability  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
      import keras  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
      # Device discovery logs the CUDA errors; do it now, while stderr is closed.
      tf.config.list_physical_devices()
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from absl import logging  # pylint: disable=g-import-not-at-top
  # INFO lines of TensorFlow's own Python code ("Using MirroredStrategy ...", "Sharding
  # callback duration") go through the absl logger that tfgen's own messages use too.
  tf.get_logger().setLevel("WARNING")
  package = os.path.dirname(os.path.abspath(__file__))
  logging.get_absl_handler().addFilter(
      lambda record: record.levelno >= logging.converter.STANDARD_WARNING or
      os.path.abspath(record.pathname).startswith(package))


def _help(extra_help):
  from absl import flags  # pylint: disable=g-import-not-at-top
  main = sys.modules["__main__"]
  parts = [(main.__doc__ or "").strip(), "", "flags:", flags.FLAGS.main_module_help()]
  if extra_help is not None:
    import_tensorflow()  # The extra help may import models: without TensorFlow's start-up lines.
    parts += ["", extra_help()]
  parts += ["", "Run with --helpfull for absl's and TensorFlow's own flags too."]
  print("\n".join(parts))


def run(main, extra_help=None):
  """`absl.app.run(main)` with a quiet TensorFlow and a `--help` that exits 0.

  Args:
    main: the command's `main(argv)`.
    extra_help: optional callable returning more help text (e.g. the models and
      their hyper-parameters), printed after the flags.
  """
  from absl import app  # pylint: disable=g-import-not-at-top
  from absl import flags  # pylint: disable=g-import-not-at-top
  quiet_environment()
  if any(arg in HELP_FLAGS for arg in sys.argv[1:]):
    flags.FLAGS(sys.argv[:1], known_only=True)  # Parsed, so the help shows defaults.
    _help(extra_help)
    sys.exit(0)

  def quiet_main(argv):
    import_tensorflow()
    return main(argv)

  app.run(quiet_main)


def first_line(error):
  """The message of a TensorFlow op error without its graph trace (for a paragraph).

  Keras wraps an error raised inside a layer's `call` in "Exception encountered when
  calling X.call()." and the message in bold (terminal escapes): the message is what
  names the problem.
  """
  text = getattr(error, "message", None) or str(error)
  text = re.sub(r"\x1b\[[0-9;]*m", "", text)
  for line in text.splitlines():
    line = line.strip()
    if line and not line.startswith(("Graph execution error", "Detected at node",
                                     "<stack traces", "[[", "File ",
                                     "Exception encountered when calling")):
      if line.startswith("assertion failed: [") and line.endswith("]"):
        line = line[len("assertion failed: ["):-1]  # A tf.debugging.Assert's message.
      return line.replace("\\'", "'")
  return text.strip()
