"""Training precision: which Keras dtype policy a machine trains fastest in.

`resolve("auto")` picks the policy from the hardware TensorFlow will run on:

  GPU with compute capability >= 8.0 (Ampere and later)   mixed_bfloat16
  GPU with compute capability 7.x (Volta, Turing)         mixed_float16
  other GPUs                                              float32
  CPU with native bfloat16 (AVX512_BF16 or AMX-BF16)      mixed_bfloat16
  other CPUs                                              float32

Under a mixed policy the layers compute in 16 bits and keep float32 variables; every
tfgen model computes its pixel parameters (logits, mixture parameters) in float32, so
the pixel distributions and every log-likelihood stay float32. Keras wraps the
optimizer of a `mixed_float16` model in a loss-scale optimizer at `compile`.

`train_main.py` trains in `auto` unless told otherwise (`--mixed_precision`). Keras users
get the same with one call before building:

  tfgen.precision.use("auto")      # sets Keras's global policy; returns its name
  model = tfgen.models.build(...)  # layers keep the policy they were built with

Measured with bench/train_speed_bench.py (docs/performance.md): on a 2-core AMD EPYC with
AVX512_BF16 and no AMX a plain convolution ran 1.9x faster in bfloat16 than in
float32 and a default PixelCNN training step 1.65x.
"""

import keras
import tensorflow as tf

from tfgen import config as config_lib

CHOICES = config_lib.MIXED_PRECISION
# The CPU flags (Linux /proc/cpuinfo) of native bfloat16 arithmetic that oneDNN uses.
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_flags(cpuinfo="/proc/cpuinfo"):
  """The CPU's feature flags, an empty set where they cannot be read (not Linux)."""
  try:
    with open(cpuinfo) as f:
      for line in f:
        if line.startswith("flags"):
          return set(line.split(":", 1)[1].split())
  except OSError:
    pass
  return set()


def gpu_compute_capabilities():
  """`(major, minor)` of each visible GPU (those TensorFlow reports one for)."""
  capabilities = []
  for gpu in tf.config.list_physical_devices("GPU"):
    capability = tf.config.experimental.get_device_details(gpu).get("compute_capability")
    if capability:
      capabilities.append(tuple(capability))
  return capabilities


def auto_policy(flags=None, capabilities=None):
  """The policy `auto` stands for on this machine (see the module docstring).

  Args:
    flags: CPU flags; read from the machine when None.
    capabilities: GPU compute capabilities; read from TensorFlow when None.

  Returns:
    "mixed_bfloat16", "mixed_float16" or "float32".
  """
  capabilities = gpu_compute_capabilities() if capabilities is None else capabilities
  if capabilities:  # The slowest GPU decides: replicas must compute alike.
    slowest = min(capabilities)
    return ("mixed_bfloat16" if slowest >= (8, 0) else
            "mixed_float16" if slowest >= (7, 0) else "float32")
  flags = cpu_flags() if flags is None else flags
  return "mixed_bfloat16" if any(f in flags for f in BF16_CPU_FLAGS) else "float32"


def resolve(name):
  """The Keras policy name of a `--mixed_precision` choice.

  Args:
    name: one of `CHOICES`; "none" is float32.

  Returns:
    "float32", "mixed_float16" or "mixed_bfloat16".

  Raises:
    ValueError: for a name not in `CHOICES`.
  """
  if name not in CHOICES:
    raise ValueError(f"mixed_precision must be one of {CHOICES}, got {name!r}.")
  if name == "auto":
    return auto_policy()
  return "float32" if name == "none" else name


def use(name="auto"):
  """Sets Keras's global dtype policy to `resolve(name)` and returns the policy name.

  Models built afterwards train in that policy; call `use("none")` to go back to
  float32. Models keep the policy they were built with.
  """
  policy = resolve(name)
  keras.mixed_precision.set_global_policy(policy)
  return policy
