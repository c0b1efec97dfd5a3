"""Runs tfgen's commands in processes of their own, without paying TensorFlow's import each time.

A command-line test needs what a user's process gives: its own flags, its own
TensorFlow runtime, its exit status, what it printed on file descriptors 1 and 2,
and a pid that can be killed with -9. A fresh Python process that imports
TensorFlow, TFP and Keras spends 5-7 s doing so on the CI machine's two cores, and the
suite starts about thirty of them.

`popen` and `run` therefore fork each command from a server process (one per test
worker, started on first use) that has imported TensorFlow, TFP, Keras, tfgen and
`export` once, the way the commands import them (`tfgen.cli.import_tensorflow`), and
has run no TensorFlow op: a process whose TensorFlow runtime has started its thread
pools cannot fork safely, and the server checks that its has not. The child sets its
argv, environment, working directory and `sys.path[0]` as `python SCRIPT` or
`python -m MODULE` would, runs the command as `__main__`, and exits with its status.

What a forked command cannot show is what happens before its first line runs: lines
printed while TensorFlow is imported, and variables TensorFlow reads only at import.
Tests of those start a real process (`fresh=True`); `TFGEN_TEST_FRESH_PROCESSES=1`
makes every command a real process, the way to rule this module out when a command
test fails.
"""

import atexit
import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_FRESH_ENV = "TFGEN_TEST_FRESH_PROCESSES"


class _Server:
  """The client's end of one fork server (see `serve`)."""

  def __init__(self):
    self._log = tempfile.NamedTemporaryFile(prefix="tfgen_command_server_", suffix=".log",
                                            delete=False)
    self._proc = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__)], cwd=REPO_ROOT,
        env=dict(os.environ, PYTHONPATH=REPO_ROOT), stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=self._log, text=True)
    ready = self._reply()
    if not ready.get("ready"):
      raise RuntimeError(f"The command server did not start: {ready}")

  def _reply(self):
    line = self._proc.stdout.readline()
    if not line:
      self._proc.wait()
      with open(self._log.name) as f:
        raise RuntimeError(f"The command server exited ({self._proc.returncode}); its log "
                           f"ends:\n{f.read()[-3000:]}")
    return json.loads(line)

  def request(self, **request):
    self._proc.stdin.write(json.dumps(request) + "\n")
    self._proc.stdin.flush()
    reply = self._reply()
    if "error" in reply:
      raise RuntimeError(f"The command server refused {request}: {reply['error']}")
    return reply

  def alive(self):
    return self._proc.poll() is None

  def close(self):
    if self.alive():
      self._proc.stdin.close()  # The server exits at the end of its input.
      try:
        self._proc.wait(timeout=30)
      except subprocess.TimeoutExpired:
        self._proc.kill()
        self._proc.wait()
    os.unlink(self._log.name)


_server = None


def _the_server():
  global _server
  if _server is None or not _server.alive():
    _server = _Server()
  return _server


@atexit.register
def close():
  """Stops this process's server, if it started one."""
  global _server
  if _server is not None:
    _server.close()
    _server = None


class Forked:
  """A forked command, with the `subprocess.Popen` methods the tests use."""

  def __init__(self, args, cwd, env):
    self.args = args
    self._dir = tempfile.mkdtemp(prefix="tfgen_command_")
    self._out = os.path.join(self._dir, "stdout")
    self._err = os.path.join(self._dir, "stderr")
    self.pid = _the_server().request(op="start", argv=list(args), cwd=cwd, env=env,
                                     stdout=self._out, stderr=self._err)["pid"]
    self.returncode = None

  def poll(self):
    if self.returncode is None:
      self.returncode = _the_server().request(op="poll", pid=self.pid)["returncode"]
    return self.returncode

  def wait(self, timeout=None):
    deadline = None if timeout is None else time.monotonic() + timeout
    while self.poll() is None:
      if deadline is not None and time.monotonic() > deadline:
        raise subprocess.TimeoutExpired(self.args, timeout)
      time.sleep(0.02)
    return self.returncode

  def communicate(self, timeout=None):
    self.wait(timeout)
    with open(self._out) as out, open(self._err) as err:
      result = out.read(), err.read()
    shutil.rmtree(self._dir, ignore_errors=True)
    return result

  def __del__(self):  # Output a test never read (a killed run's): not left in /tmp.
    shutil.rmtree(self._dir, ignore_errors=True)

  def send_signal(self, sig):
    if self.poll() is None:
      os.kill(self.pid, sig)

  def kill(self):
    self.send_signal(signal.SIGKILL)


def environment():
  """What a command runs with by default: this process's environment, the repository on
  PYTHONPATH and TensorFlow's C++ start-up logs off."""
  return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=REPO_ROOT)


def popen(args, *, cwd=REPO_ROOT, env=None, fresh=False):
  """Starts `python SCRIPT ARGS...` or `python -m MODULE ARGS...`, output captured as text.

  Args:
    args: the command as for `subprocess.Popen`, starting with `sys.executable`.
    cwd: its working directory.
    env: its environment (default: `environment()`).
    fresh: start a real process (see the module docstring for when a test needs one).

  Returns:
    A `Forked` command, or a `subprocess.Popen` for a fresh one.
  """
  env = environment() if env is None else dict(env)
  forkable = args[0] == sys.executable and (args[1] == "-m" or args[1].endswith(".py"))
  if fresh or os.environ.get(_FRESH_ENV) == "1" or not forkable:
    return subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
  return Forked(args, cwd, env)


def run(args, *, cwd=REPO_ROOT, env=None, timeout=300, fresh=False):
  """`popen`, then waits: a `subprocess.CompletedProcess` (killed after `timeout` s)."""
  proc = popen(args, cwd=cwd, env=env, fresh=fresh)
  try:
    out, err = proc.communicate(timeout=timeout)
  except subprocess.TimeoutExpired:
    proc.kill()
    proc.communicate()
    raise
  return subprocess.CompletedProcess(args, proc.returncode, out, err)


# ---- the server ---------------------------------------------------------------------

def _preload():
  """Imports what the commands import, as they do; fails if TensorFlow's runtime started."""
  sys.path.insert(0, REPO_ROOT)
  from tfgen import cli  # pylint: disable=g-import-not-at-top
  cli.import_tensorflow()
  # What train_main.py, score_main.py and `python -m export` import after parsing flags.
  for module in ("matplotlib.pyplot", "sklearn.linear_model", "export.export_lib",
                 "tfgen.scoring", "tfgen.train_lib"):
    importlib.import_module(module)
  from tensorflow.python.eager import context  # pylint: disable=g-import-not-at-top
  if context.context()._initialized:  # pylint: disable=protected-access
    raise RuntimeError("an import started TensorFlow's runtime: forking is not safe")
  sys.path.remove(REPO_ROOT)


def _child(request):
  """Becomes the command: never returns."""
  code = 1
  try:
    for fd, path, flags in ((0, os.devnull, os.O_RDONLY),
                            (1, request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
                            (2, request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)):
      opened = os.open(path, flags, 0o644)
      os.dup2(opened, fd)
      os.close(opened)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    import runpy  # pylint: disable=g-import-not-at-top
    argv = request["argv"][1:]
    if argv[0] == "-m":  # python -m MODULE: the working directory comes first on the path.
      sys.argv = [argv[1]] + argv[2:]
      sys.path.insert(0, os.getcwd())
      runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
    else:
      sys.argv = argv
      sys.path.insert(0, os.path.dirname(os.path.abspath(argv[0])))
      runpy.run_path(argv[0], run_name="__main__")
    code = 0
  except SystemExit as e:
    if e.code is None or isinstance(e.code, int):
      code = e.code or 0
    else:
      print(e.code, file=sys.stderr)
  except BaseException:  # pylint: disable=broad-except
    import traceback  # pylint: disable=g-import-not-at-top
    traceback.print_exc()
  finally:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # pylint: disable=protected-access


def serve():
  """Answers JSON requests on stdin, one JSON reply per line on stdout."""
  _preload()
  reply = lambda **r: (sys.stdout.write(json.dumps(r) + "\n"), sys.stdout.flush())
  reply(ready=True)
  for line in sys.stdin:
    request = json.loads(line)
    if request["op"] == "start":
      sys.stderr.flush()
      pid = os.fork()
      if pid == 0:
        _child(request)
      reply(pid=pid)
    elif request["op"] == "poll":
      try:
        pid, status = os.waitpid(request["pid"], os.WNOHANG)
      except ChildProcessError:
        reply(error=f"no child {request['pid']} (already reaped?)")
        continue
      reply(returncode=os.waitstatus_to_exitcode(status) if pid else None)
    else:
      reply(error=f"unknown op {request['op']!r}")


if __name__ == "__main__":
  sys.path.remove(os.path.dirname(os.path.abspath(__file__)))  # Not a command's path.
  serve()
