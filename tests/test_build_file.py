"""BUILD stays true: every module, binary and test file is a target, deps resolve.

Bazel cannot fetch its rules offline here, so the file is evaluated as Starlark-like
Python with stand-ins for the rules that record what they are given.
"""

import configparser
import glob
import os
import re

from conftest import REPO_ROOT


def _evaluate_build():
  targets = {}

  def rule(kind):
    def record(name, srcs=(), deps=(), **kwargs):
      assert name not in targets, f"duplicate target {name}"
      targets[name] = dict(kind=kind, srcs=list(srcs), deps=list(deps), **kwargs)
    return record

  scope = {
      "load": lambda *args: None,
      "package": lambda **kwargs: None,
      "glob": lambda patterns: sorted(  # Files only, as Bazel's glob.
          p for pattern in patterns for p in _python_files(pattern.replace("**", "**/*"))
          if os.path.isfile(os.path.join(REPO_ROOT, p))),
      "requirement": lambda name: f"@pypi//{name}",
      "py_library": rule("py_library"),
      "py_binary": rule("py_binary"),
      "py_test": rule("py_test"),
  }
  with open(os.path.join(REPO_ROOT, "BUILD")) as f:
    exec(compile(f.read(), "BUILD", "exec"), scope)  # pylint: disable=exec-used
  return targets


def _python_files(pattern):
  return {os.path.relpath(p, REPO_ROOT) for p in glob.glob(os.path.join(REPO_ROOT, pattern),
                                                           recursive=True)}


def _declared_requirements():
  parser = configparser.ConfigParser()
  parser.read(os.path.join(REPO_ROOT, "setup.cfg"))
  lines = parser["options"]["install_requires"].split("\n")
  lines += parser["options.extras_require"]["test"].split("\n")
  names = {re.split(r"[\[~<>=!;\s]", line.strip())[0].lower() for line in lines if line.strip()}
  return names | {"tf-keras"}  # Pulled in by tensorflow-probability[tf].


def test_every_file_is_in_a_target():
  targets = _evaluate_build()
  named = {src for t in targets.values() for src in t["srcs"]}
  library = (_python_files("tfgen/**/*.py") | _python_files("export/**/*.py") |
             _python_files("bench/**/*.py") | {"train_main.py"})
  tests = _python_files("tests/*.py")
  missing = sorted((library | tests) - named)
  assert not missing, f"BUILD does not name: {missing}"
  stale = sorted(src for src in named if not os.path.exists(os.path.join(REPO_ROOT, src)))
  assert not stale, f"BUILD names files that do not exist: {stale}"


def test_every_test_file_is_a_py_test():
  targets = _evaluate_build()
  test_srcs = {src for t in targets.values() if t["kind"] == "py_test" for src in t["srcs"]}
  assert test_srcs == _python_files("tests/test_*.py")


def test_binaries_exist_for_entry_points():
  binaries = {t["srcs"][0] for t in _evaluate_build().values() if t["kind"] == "py_binary"}
  assert "train_main.py" in binaries
  assert _python_files("bench/*_bench.py") <= binaries


def test_deps_resolve():
  targets = _evaluate_build()
  declared = _declared_requirements()
  for name, target in targets.items():
    for dep in target["deps"]:
      if dep.startswith(":"):
        assert dep[1:] in targets, f"{name} depends on unknown target {dep}"
      else:
        package = dep.split("//")[1]
        assert package.lower() in declared, f"{name}: {package} is not in setup.cfg"


if __name__ == "__main__":
  import sys
  import pytest
  sys.exit(pytest.main([__file__, "-q"]))
