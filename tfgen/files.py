"""Writing run outputs so that nothing already written is lost: atomic files, a run lock.

Every file a run writes (`model.keras`, `config.json`, `metrics.json`, pictures) is
written under a temporary name in the same directory and renamed over the target, so
a reader, or a run killed at any instant, sees the previous complete file or the new
complete file, never a truncated one. The run lock keeps a second training process
out of a directory while one is using it.
"""

import contextlib
import fcntl
import json
import os
import socket
import time


def _partial_path(path, suffix=""):
  head, tail = os.path.split(path)
  return os.path.join(head, f".{tail}.partial-{os.getpid()}{suffix}")


def atomic_write(path, data):
  """Writes `data` (bytes or str) to `path` by a rename: complete or not at all."""
  partial = _partial_path(path)
  try:
    with open(partial, "wb" if isinstance(data, bytes) else "w") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.replace(partial, path)
  finally:
    if os.path.exists(partial):
      os.remove(partial)


def atomic_json(path, obj):
  """`atomic_write` of `obj` as indented JSON."""
  atomic_write(path, json.dumps(obj, indent=2))


@contextlib.contextmanager
def atomic_path(path):
  """Yields a temporary path for a writer that takes a file name (e.g. `model.save`),
  then renames it over `path`; on an error the temporary file is removed and `path`
  is untouched. The temporary name keeps `path`'s extension (Keras checks it)."""
  partial = _partial_path(path, os.path.splitext(path)[1])
  try:
    yield partial
    os.replace(partial, path)
  finally:
    if os.path.exists(partial):
      os.remove(partial)


def read_json(path, what="file"):
  """Loads a JSON file; a damaged one is a ValueError that names it and what to do."""
  try:
    with open(path) as f:
      return json.load(f)
  except ValueError as e:
    raise ValueError(
        f"{path} is not valid JSON ({e}). This {what} is damaged: restore it from a "
        "backup, or delete it (and pass a new --model_dir) to start afresh.") from e


class RunBusyError(ValueError):
  """Another live process holds the run directory's lock."""


class RunLock:
  """An exclusive lock on a run directory, held by the process that writes it.

  `fcntl.flock` on `DIR/.lock`: the kernel releases it when the holder exits in any
  way (kill -9 included), so a lock is never left behind by a dead process. The file
  also records who holds it (pid, host, start time) for the message a second run
  gets; a record found while the lock is free is a run that died, and is taken over
  with a message.

  Raises (on entry):
    RunBusyError: while another process holds the lock.
  """

  NAME = ".lock"

  def __init__(self, directory, log=print):
    self.path = os.path.join(directory, self.NAME)
    self.log = log
    self._file = None

  def __enter__(self):
    f = open(self.path, "a+")
    try:
      fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      f.seek(0)
      holder = f.read().strip() or "another process"
      f.close()
      raise RunBusyError(
          f"{os.path.dirname(self.path)} is in use by a running training ({holder}). Two "
          "runs writing one directory would mix their checkpoints and outputs. Wait for "
          "it to finish (or stop it), or pass another --model_dir.") from None
    f.seek(0)
    stale = f.read().strip()
    if stale:
      self.log(f"Taking over the lock of {os.path.dirname(self.path)} from a run that is "
               f"no longer running ({stale}).")
    f.seek(0)
    f.truncate()
    f.write(f"pid {os.getpid()} on {socket.gethostname()}, since "
            f"{time.strftime('%Y-%m-%d %H:%M:%S')}")
    f.flush()
    self._file = f
    return self

  def __exit__(self, *_):
    # Emptied, not removed: removing it could let two later runs lock different files.
    self._file.seek(0)
    self._file.truncate()
    self._file.flush()
    fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
    self._file.close()
    self._file = None
