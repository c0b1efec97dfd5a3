"""The README's Python blocks run as written, in order, in one namespace."""

import os
import re
import textwrap

from conftest import REPO_ROOT
from export import export_lib
from tfgen import models


def _python_blocks():
  text = open(os.path.join(REPO_ROOT, "README.md")).read()
  # Indented blocks (inside list items) too: dedented as a reader would paste them.
  return [textwrap.dedent(block) for block in
          re.findall(r"^( *)```python\n(.*?)^\1```", text, re.S | re.M)
          for block in [block[1]]]


def test_readme_python_blocks_run(tmp_path, monkeypatch):
  blocks = _python_blocks()
  assert len(blocks) >= 3, "README has lost its examples"
  monkeypatch.chdir(tmp_path)
  # "Adding a model family" registers its toy family: not beyond this test.
  monkeypatch.setattr(models, "_REGISTRY", dict(models._REGISTRY))  # pylint: disable=protected-access
  namespace = {}
  for block in blocks:
    if "exported/" in block and not os.path.exists("exported"):
      # What the README's `python3 -m export ... --out=exported` writes, for the model
      # the first block trained.
      export_lib.export(namespace["model"], "exported", formats=["saved_model"])
    exec(compile(block, "README.md", "exec"), namespace)  # pylint: disable=exec-used
  assert namespace["images"].dtype.name == "uint8"
