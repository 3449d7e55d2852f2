"""Pack tools run in worker processes, so that a time limit really stops a tool.

A thread cannot be stopped: a tool that overran its limit went on running (and writing files, holding
a database, burning a core) after the caller had moved on. Here each call goes to a warm worker
process; when the limit passes, the worker's whole process group is killed (the tool's own child
processes included, unless one detached into a session of its own) and the next call gets a fresh
worker. Only the tool's execution counts against the limit, not starting the worker or importing the
tool's module.

Cost: a worker starts once (about 0.2 s plus the tools module's imports) and then serves calls over a
pipe for well under a millisecond each; idle workers are kept for the next call, a spare is started
after each kill, and every worker ends with this process.

What crosses the pipe: the tool's JSON arguments; its result as JSON (tools must return a
JSON-serialisable dict anyway); a `ValueError`'s message; any other exception, pickled when possible.
Before each call the worker takes over the caller's environment variables, working folder and
`sys.path`, so `state_dir`, `POLYGLM_CACHE` and relative paths mean the same in both processes.

How a worker finds the function: a tool from a pack's tools.py (see `remember_origin`) is looked up by
name in that file, executed afresh in the worker whenever the caller imported it afresh; any other
tool must be importable as `module.qualname` (a module-level function). Tools defined inside a
function cannot be found and are refused with a message saying so.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import importlib.util
import json
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import threading
import time
import traceback
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

START_LIMIT_S = 120.0  # starting a worker and importing the tool's module (sympy is slow on a busy CPU)
MAX_IDLE_WORKERS = 2  # warm workers kept between calls
_HEADER = struct.Struct(">I")  # each message: 4-byte big-endian length, then a pickle


# ---------------------------------------------------------------- where a tool lives


@dataclass(frozen=True)
class Origin:
    """How a worker process finds a tool function."""

    module: str  # module name (for a pack: polyglm_pack_<name>_tools)
    attribute: str  # the function's attribute path in that module
    file: str | None  # a file executed by path (a pack's tools.py), None for an importable module
    token: str  # changes when the caller imports the file afresh, so the worker does too


_ORIGINS: weakref.WeakKeyDictionary[Callable, Origin] = weakref.WeakKeyDictionary()
_ORIGINS_LOCK = threading.Lock()


def remember_origin(module: Any, path: Path, is_tool: Callable[[Any], bool]) -> None:
    """Record, for every tool in a tools module that was executed by path, how a worker finds it again."""
    token = f"{id(module)}:{time.monotonic_ns()}"
    with _ORIGINS_LOCK:
        for name, value in vars(module).items():
            if callable(value) and is_tool(value):
                _ORIGINS[value] = Origin(module.__name__, name, str(path), token)


def origin_of(fn: Callable) -> Origin | None:
    """Where a worker finds `fn`; None when it cannot (a function defined inside another function)."""
    with _ORIGINS_LOCK:
        known = _ORIGINS.get(fn)
    if known is not None:
        return known
    module, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", "")
    if not module or "<locals>" in qualname or "<lambda>" in qualname:
        return None
    if module == "__main__":  # a script: the worker runs its file under another name, so its main guard stays off
        file = getattr(sys.modules.get("__main__"), "__file__", None)
        return Origin("__polyglm_tool_main__", qualname, file, "main") if file else None
    return Origin(module, qualname, None, "import")


# ---------------------------------------------------------------- the caller's side


@dataclass(frozen=True)
class Outcome:
    """What one call produced. Exactly one field is set."""

    result: dict | None = None  # the tool's result
    value_error: str | None = None  # the message of a ValueError the tool raised
    timed_out: bool = False  # the limit passed; the worker and everything it started were killed
    unusable: str | None = None  # the result was not a JSON-serialisable dict (names its type)


class WorkerError(Exception):
    """The worker could not run the call (tool not found, module import failed, worker crashed)."""


class _Overrun(Exception):
    """The deadline passed while waiting for the worker."""


class _Worker:
    """One worker process, in its own process group so a kill reaches what the tool started too."""

    def __init__(self) -> None:
        package_parent = str(Path(__file__).resolve().parents[2])
        boot = f"import sys; sys.path.insert(0, {package_parent!r}); import {__name__} as w; w.serve()"
        self.process = subprocess.Popen(
            [sys.executable, "-c", boot], stdin=subprocess.PIPE, stdout=subprocess.PIPE, process_group=0, bufsize=0
        )
        self._buffer = bytearray()
        _LIVE.add(self)

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def call(self, origin: Origin, arguments: dict, limit: float) -> tuple:
        self._send(
            {"origin": origin, "arguments": arguments, "env": dict(os.environ), "cwd": os.getcwd(), "path": sys.path}
        )
        first = self._receive(time.monotonic() + START_LIMIT_S)
        if first[0] != "started":
            return first  # the function could not be found or its module failed to import
        return self._receive(time.monotonic() + limit)

    def kill(self) -> None:
        """SIGKILL the worker's whole process group, then reap the worker."""
        with contextlib.suppress(ProcessLookupError, PermissionError):  # already gone
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            stream.close()
        _LIVE.discard(self)

    def _send(self, message: dict) -> None:
        payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        try:
            self.process.stdin.write(_HEADER.pack(len(payload)) + payload)
        except (BrokenPipeError, OSError) as exc:
            raise WorkerError(f"the tool worker exited before the call ({exc})") from None

    def _receive(self, deadline: float) -> tuple:
        header = self._read_exactly(_HEADER.size, deadline)
        return pickle.loads(self._read_exactly(_HEADER.unpack(header)[0], deadline))

    def _read_exactly(self, size: int, deadline: float) -> bytes:
        fd = self.process.stdout.fileno()
        while len(self._buffer) < size:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                raise _Overrun()
            chunk = os.read(fd, max(65536, size - len(self._buffer)))
            if not chunk:
                code = self.process.wait()
                raise WorkerError(f"the tool worker died during the call (exit code {code})")
            self._buffer += chunk
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data


_LIVE: weakref.WeakSet[_Worker] = weakref.WeakSet()
_IDLE: list[_Worker] = []
_IDLE_LOCK = threading.Lock()


def _take_worker() -> _Worker:
    with _IDLE_LOCK:
        while _IDLE:
            worker = _IDLE.pop()
            if worker.alive:
                return worker
            worker.kill()
    return _Worker()


def _give_back(worker: _Worker) -> None:
    with _IDLE_LOCK:
        if len(_IDLE) < MAX_IDLE_WORKERS:
            _IDLE.append(worker)
            return
    worker.kill()


def _start_spare() -> None:
    """A fresh worker starts booting now, so the call after a timeout does not wait for one."""
    with _IDLE_LOCK:
        if len(_IDLE) < MAX_IDLE_WORKERS:
            _IDLE.append(_Worker())


def run_in_worker(origin: Origin, arguments: dict, limit: float) -> Outcome:
    """Run the tool at `origin` with `arguments`, stopped (killed) after `limit` seconds of running.

    Raises the tool's own exception (other than ValueError) as the tool raised it, or WorkerError."""
    worker = _take_worker()
    try:
        reply = worker.call(origin, arguments, limit)
    except _Overrun:
        worker.kill()
        _start_spare()
        return Outcome(timed_out=True)
    except BaseException:  # KeyboardInterrupt, a broken pipe: the worker's state is unknown
        worker.kill()
        raise
    _give_back(worker)
    return _outcome(reply)


def _outcome(reply: tuple) -> Outcome:
    kind = reply[0]
    if kind == "ok":
        return Outcome(result=json.loads(reply[1]))
    if kind == "value_error":
        return Outcome(value_error=reply[1])
    if kind == "unusable":
        return Outcome(unusable=reply[1])
    if kind == "unavailable":
        raise WorkerError(reply[1])
    _, pickled, described, trace = reply
    try:
        exception = pickle.loads(pickled) if pickled is not None else None
    except Exception:  # its class exists only in the worker: describe it instead
        exception = None
    if not isinstance(exception, BaseException):
        raise WorkerError(f"the tool raised {described}\n{trace}")
    exception.add_note(f"raised in the tool worker process:\n{trace}")
    raise exception


@atexit.register
def _stop_all_workers() -> None:
    for worker in list(_LIVE):
        worker.kill()


# ---------------------------------------------------------------- the worker's side


def serve() -> None:
    """The worker's loop: read a call, run it, write the outcome; exit when the caller goes away."""
    # The channels get private descriptors: a tool's print() goes to stderr and input() reads nothing,
    # so no tool can write into the replies or swallow the next request.
    replies = os.fdopen(os.dup(1), "wb", buffering=0)
    requests = os.fdopen(os.dup(0), "rb")
    os.dup2(2, 1)
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    _exit_with_parent()
    modules: OrderedDict[tuple, Any] = OrderedDict()
    while True:
        request = _read_request(requests)
        if request is None:
            return
        _adopt_context(request)
        try:
            fn = _find(modules, request["origin"])
        except BaseException as exc:  # a missing tool or a module that fails to import
            _write(replies, ("unavailable", _unavailable(request["origin"], exc)))
            continue
        _write(replies, ("started",))
        _write(replies, _run(fn, request["arguments"]))


def _exit_with_parent() -> None:
    """Leave when the caller dies (even SIGKILLed), also while a tool is busy."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="polyglm-tool-worker-watchdog", daemon=True).start()


def _read_request(stream) -> dict | None:
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return None
    return pickle.loads(stream.read(_HEADER.unpack(header)[0]))


def _write(stream, reply: tuple) -> None:
    payload = pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(payload)) + payload)


def _adopt_context(request: dict) -> None:
    os.environ.clear()
    os.environ.update(request["env"])
    sys.path[:] = request["path"]
    with contextlib.suppress(OSError):  # the caller's folder is gone: the tool runs where the worker is
        os.chdir(request["cwd"])


def _find(modules: OrderedDict[tuple, Any], origin: Origin) -> Callable:
    key = (origin.module, origin.file, origin.token)
    module = modules.get(key)
    if module is None:
        if origin.file:  # a pack's tools.py runs afresh under the caller's module name, as the loader ran it
            module = execute_tools_file(origin.module, origin.file)
        else:
            module = importlib.import_module(origin.module)
        modules[key] = module
        while len(modules) > 16:  # a long session re-imports packs; keep the recent ones
            modules.popitem(last=False)
    modules.move_to_end(key)
    target: Any = module
    for part in origin.attribute.split("."):
        target = getattr(target, part)
    return target


def execute_tools_file(module_name: str, path: Path | str) -> Any:
    """Execute a pack's tools.py afresh as `module_name`, a package rooted at the pack folder.

    Rooting it at the pack folder lets tools.py import a package beside it relatively
    (`from .education_tools import check_answer`); the previous load's submodules are dropped first so
    a re-import never runs stale code, and packs (or copies of one pack) never share modules."""
    for stale in [key for key in sys.modules if key == module_name or key.startswith(f"{module_name}.")]:
        del sys.modules[stale]
    locations = [str(Path(path).parent)]
    spec = importlib.util.spec_from_file_location(module_name, path, submodule_search_locations=locations)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and relative package imports look it up here
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    return module


def _unavailable(origin: Origin, exc: BaseException) -> str:
    where = origin.file or origin.module
    return f"the tool worker cannot load `{origin.attribute}` from {where}: {type(exc).__name__}: {exc}"


def _run(fn: Callable, arguments: dict) -> tuple:
    try:
        result = fn(**arguments)
    except ValueError as exc:
        return ("value_error", str(exc))
    except BaseException as exc:  # a bug in the tool: the caller re-raises it
        return ("error", _pickled(exc), f"{type(exc).__name__}: {exc}", traceback.format_exc())
    if not isinstance(result, dict):
        return ("unusable", type(result).__name__)
    try:
        return ("ok", json.dumps(result))
    except (TypeError, ValueError):
        return ("unusable", type(result).__name__)


def _pickled(exc: BaseException) -> bytes | None:
    try:
        payload = pickle.dumps(exc, protocol=pickle.HIGHEST_PROTOCOL)
        pickle.loads(payload)
    except Exception:
        return None
    return payload
