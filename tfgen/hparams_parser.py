"""Parses `--hparams` strings: "hidden_dim=64,num_blocks=8,dropout=0.1,gated=true"."""


def _value(text):
  lowered = text.lower()
  if lowered in ("true", "false"):
    return lowered == "true"
  for kind in (int, float):
    try:
      return kind(text)
    except ValueError:
      pass
  return text


def parse(text):
  """Returns a dict of hyper-parameters; ints, floats and booleans are converted.

  Raises:
    ValueError: for an item that is not `key=value`.
  """
  out = {}
  for item in filter(None, (part.strip() for part in (text or "").split(","))):
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
      raise ValueError(f"--hparams items must be key=value, got {item!r} in {text!r}.")
    out[key.strip()] = _value(value.strip())
  return out
