"""The README's and the guides' Python blocks run as written, in order, in one namespace.

The order is the README's, then each guide of `docs/` in the order the README links
them (a guide may use what an earlier block made, e.g. the README's `model`).
"""

import os
import re
import textwrap

from conftest import REPO_ROOT
from export import export_lib
from tfgen import models


def _documents():
  """README.md, then every docs/*.md in the order the README links them."""
  readme = os.path.join(REPO_ROOT, "README.md")
  linked = re.findall(r"\]\((docs/[\w.-]+\.md)\)", open(readme).read())
  ordered = list(dict.fromkeys(linked))
  on_disk = sorted(f"docs/{name}" for name in os.listdir(os.path.join(REPO_ROOT, "docs"))
                   if name.endswith(".md"))
  assert sorted(ordered) == on_disk, "the README must link every guide in docs/"
  return [readme] + [os.path.join(REPO_ROOT, path) for path in ordered]


def _python_blocks(path):
  text = open(path).read()
  # Indented blocks (inside list items) too: dedented as a reader would paste them.
  return [textwrap.dedent(block) for block in
          re.findall(r"^( *)```python\n(.*?)^\1```", text, re.S | re.M)
          for block in [block[1]]]


def test_readme_python_blocks_run(tmp_path, monkeypatch):
  documents = _documents()
  assert len(_python_blocks(documents[0])) >= 2, "README has lost its examples"
  monkeypatch.chdir(tmp_path)
  # "Adding a model family" registers its toy family: not beyond this test.
  monkeypatch.setattr(models, "_REGISTRY", dict(models._REGISTRY))  # pylint: disable=protected-access
  namespace = {}
  for path in documents:
    for block in _python_blocks(path):
      if "exported/" in block and not os.path.exists("exported"):
        # What `python3 -m export ... --out=exported` (docs/export.md) writes, for the
        # model the README's first block trained.
        export_lib.export(namespace["model"], "exported", formats=["saved_model"])
      exec(compile(block, os.path.basename(path), "exec"), namespace)  # pylint: disable=exec-used
  assert namespace["images"].dtype.name == "uint8"
