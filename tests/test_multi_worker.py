"""MultiWorkerMirroredStrategy: two worker processes on 127.0.0.1.

Each test starts two workers on free loopback ports, bounds their time, and kills
whatever is left on the way out.
"""

import json
import os
import signal
import socket
import sys
import time

import numpy as np
import pytest

import commands
from conftest import REPO_ROOT
from tfgen import config as config_lib
from tfgen import train_lib

RUNNER = os.path.join(REPO_ROOT, "tests", "multi_worker_runner.py")
# float32: the workers' weights are compared with one process's to float32 tolerances,
# which the 16-bit rounding of the auto policy (bf16 on AVX512_BF16 CPUs) exceeds.
CONFIG = dict(model="pixelcnn", dataset="digits", batch_size=32, train_steps=8,
              checkpoint_every=2, num_samples=0, verbose=0, seed=11, lr_schedule="constant",
              mixed_precision="none",
              hparams={"hidden_dim": 4, "num_blocks": 1, "output_dim": 8,
                       "input_kernel_size": 3, "kernel_size": 3})


def _free_ports(n):
  sockets = [socket.socket() for _ in range(n)]
  for s in sockets:
    s.bind(("127.0.0.1", 0))
  ports = [s.getsockname()[1] for s in sockets]
  for s in sockets:
    s.close()
  return ports


def _start_workers(workdir, tmp_path, tag, **overrides):
  hosts = [f"127.0.0.1:{p}" for p in _free_ports(2)]
  env = commands.environment()
  env.pop("TF_CONFIG", None)
  procs = []
  for index in range(2):
    config = dict(CONFIG, strategy="multi_worker", worker_hosts=hosts, task_index=index,
                  **overrides)
    out = str(tmp_path / f"{tag}_worker{index}.npz")
    procs.append((commands.popen(
        [sys.executable, RUNNER, json.dumps(config), str(workdir), out], env=env), out))
  return procs


def _finish(procs, timeout=300):
  try:
    for proc, _ in procs:
      _, err = proc.communicate(timeout=timeout)
      assert proc.returncode == 0, err[-3000:]
  finally:
    _kill(procs)
  return [list(np.load(out).values()) for _, out in procs]


def _kill(procs):
  for proc, _ in procs:
    if proc.poll() is None:
      proc.kill()
      proc.wait()


def _single_process_weights(tmp_path, **overrides):
  weights = []
  train_lib.train_and_evaluate(
      config_lib.TrainConfig.from_flat(**dict(CONFIG, strategy="one_device", **overrides)),
      str(tmp_path / "single"), on_trained=lambda model: weights.extend(model.get_weights()))
  return weights


def _assert_same(a, b, **tol):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    np.testing.assert_allclose(x, y, **tol)


def test_two_workers_train_like_one_process(tmp_path):
  workdir = tmp_path / "run"
  w0, w1 = _finish(_start_workers(workdir, tmp_path, "run", num_samples=4))
  _assert_same(w0, w1, rtol=0, atol=0)  # All-reduce gives every worker the same update.
  _assert_same(w0, _single_process_weights(tmp_path), rtol=1e-4, atol=1e-6)
  # Only the chief wrote outputs; the other worker's temporary checkpoints are gone.
  metrics = json.loads((workdir / "metrics.json").read_text())
  assert metrics["num_replicas"] == 2 and metrics["train_steps"] == 8
  assert (workdir / "model.keras").exists() and (workdir / "samples.png").exists()
  assert not list(workdir.glob(".worker_*"))


def test_killed_worker_resumes_from_last_checkpoint(tmp_path):
  workdir = tmp_path / "run"
  overrides = dict(train_steps=40, checkpoint_every=4)
  procs = _start_workers(workdir, tmp_path, "first", **overrides)
  try:
    deadline = time.time() + 240
    index = workdir / "checkpoints" / "checkpoint"
    while not index.exists() and time.time() < deadline:
      assert all(p.poll() is None for p, _ in procs), procs[0][0].communicate()[1][-3000:]
      time.sleep(0.05)
    assert index.exists(), "no checkpoint within the time limit"
    procs[1][0].send_signal(signal.SIGKILL)  # A worker dies mid-run ...
  finally:
    _kill(procs)  # ... and the job is restarted, as a cluster manager would.
  assert not (workdir / "metrics.json").exists()
  w0, w1 = _finish(_start_workers(workdir, tmp_path, "second", **overrides))
  _assert_same(w0, w1, rtol=0, atol=0)
  metrics = json.loads((workdir / "metrics.json").read_text())
  assert 0 < metrics["resumed_from_step"] < 40  # It resumed rather than started over.
  # Exactness is against an uninterrupted job of the same two workers: the same
  # all-reduce order. Against one process, hundreds of Adam steps grow float
  # summation-order differences to ~1e-3 on some CPUs (measured here at 400), so that
  # comparison is loose.
  straight = _finish(_start_workers(tmp_path / "straight", tmp_path, "straight", **overrides))
  _assert_same(w0, straight[0], rtol=1e-5, atol=1e-6)
  _assert_same(w0, _single_process_weights(tmp_path, **overrides), rtol=2e-2, atol=2e-3)


def test_multi_worker_configuration_errors():
  with pytest.raises(ValueError, match="task_index must index"):
    config_lib.TrainConfig.from_flat(strategy="multi_worker", worker_hosts=("a:1", "b:2")).validate()
  with pytest.raises(ValueError, match="only used with strategy='multi_worker'"):
    config_lib.TrainConfig.from_flat(worker_hosts=("a:1",), task_index=0).validate()
  with pytest.raises(ValueError, match="cannot be used with multi_worker"):
    config_lib.TrainConfig.from_flat(strategy="multi_worker", max_train_seconds=5).validate()


if __name__ == "__main__":
  sys.exit(pytest.main([__file__, "-q"]))
