"""One worker of the multi-worker tests (tests/test_multi_worker.py).

  python multi_worker_runner.py CONFIG_JSON WORKDIR WEIGHTS_NPZ

Trains with `tfgen.train_lib.train_and_evaluate` and saves this worker's final weights.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

import keras  # noqa: E402
# Full tracebacks: the test puts this worker's stderr into its failure message.
keras.config.disable_traceback_filtering()
from tfgen import config as config_lib  # noqa: E402
from tfgen import train_lib  # noqa: E402


def main():
  config_json, workdir, out = sys.argv[1:4]
  config = config_lib.TrainConfig.from_flat(**json.loads(config_json))
  weights = []
  train_lib.train_and_evaluate(config, workdir,
                               on_trained=lambda model: weights.extend(model.get_weights()))
  np.savez(out, *weights)


if __name__ == "__main__":
  main()
