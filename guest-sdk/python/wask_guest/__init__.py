"""wask_guest: the small SDK for writing a wask task in Python.

The same concepts as the Rust SDK (``guest-sdk/src/lib.rs``). A wask task runs in a
sandbox whose filesystem is the workspace seen from ``/``: its declared inputs
(read-only), writable only under its declared outputs, and ``/.wask/task.json``, the
description wask writes (project directory, declared inputs, output patterns). This
module reads that description and gives a task:

- ``Task.args`` and ``Task.args_exact(n)``: the task's ``args`` in ``wask.toml``;
- ``Task.inputs`` and ``Task.inputs_under(dir)``: the declared inputs, as workspace
  paths (``/site/pages/a.md``);
- ``Task.resolve(path)``: a project-relative path (``pages/a.md``) made
  workspace-absolute;
- ``Task.read``, ``Task.read_text`` and ``Task.write_output`` (which makes parent
  directories);
- ``Task.env(name)``: an allow-listed environment variable, or an error saying how to
  allow it;
- ``main(body)``: runs ``body(task)``, prints a ``TaskError`` (or any exception) as one
  ``error: ...`` line on stderr, and returns the exit status (0 or 1).

It uses the standard library only, so a task needs no network when it runs. The same
code runs natively: build a ``Task`` with ``Task.from_parts`` over a temporary
directory to test a task's logic.

    import wask_guest

    def body(task):
        src, out = task.args_exact(2)
        task.write_output(out, task.read_text(src).upper())

    status = wask_guest.main(body)   # 0 or 1
"""

from __future__ import annotations

import json
import os
import sys
from typing import Callable, Iterable, Optional

__all__ = ["TASK_FILE", "Task", "TaskError", "log", "main"]

TASK_FILE = "/.wask/task.json"
"""Where wask puts the task description inside the sandbox."""


class TaskError(Exception):
    """An error meant for the person reading the task's output; ``main`` prints it as
    ``error: <message>`` and returns 1."""


def _io_words(e: OSError) -> str:
    """An OS error in words, without the errno number (a WASI errno is not the
    host's, and helps nobody)."""
    return e.strerror or e.__class__.__name__


def _normalise(path: str) -> str:
    """``path`` (absolute) with ``.`` and ``..`` resolved, never above ``/``."""
    parts: list[str] = []
    for seg in path.split("/"):
        if seg in ("", "."):
            continue
        if seg == "..":
            if parts:
                parts.pop()
            continue
        parts.append(seg)
    return "/" + "/".join(parts)


class Task:
    """The running task: its arguments, declared inputs and outputs, and its project.

    Paths given to and returned by a ``Task`` are workspace paths: ``/`` is the
    workspace root, exactly as the task sees its filesystem under wask.
    """

    def __init__(
        self,
        root: str,
        project_dir: str,
        args: list[str],
        inputs: list[str],
        outputs: list[str],
        usage: Optional[str] = None,
    ) -> None:
        self._root = root
        self.project_dir = project_dir
        self.args = list(args)
        self.inputs = sorted(inputs)
        self.outputs = list(outputs)
        self._usage = usage

    @classmethod
    def load(cls, usage: Optional[str] = None) -> "Task":
        """The task wask is running: its description from ``TASK_FILE`` and its
        arguments from the command line."""
        try:
            with open(TASK_FILE, "rb") as f:
                description = json.load(f)
        except OSError as e:
            raise TaskError(
                f"cannot read {TASK_FILE}: {_io_words(e)} (is this running under wask?)"
            ) from None
        except ValueError:
            raise TaskError(f"{TASK_FILE} is not a task description") from None
        if description.get("wask_task") != 1:
            raise TaskError(
                f"{TASK_FILE} is format {description.get('wask_task')!r}; this SDK reads format 1"
            )
        return cls(
            "/",
            description["project_dir"],
            sys.argv[1:],
            description.get("inputs", []),
            description.get("outputs", []),
            usage,
        )

    @classmethod
    def from_parts(
        cls,
        root: str,
        project_dir: str,
        args: Iterable[str] = (),
        inputs: Iterable[str] = (),
        outputs: Iterable[str] = (),
    ) -> "Task":
        """A task built by hand, for native tests: workspace path ``/`` is ``root``."""
        return cls(root, project_dir, list(args), list(inputs), list(outputs))

    def args_exact(self, n: int) -> list[str]:
        """Exactly ``n`` arguments, or a usage error saying how many were given."""
        if len(self.args) != n:
            raise self.usage_error(
                f"expected {n} argument(s) in the task's `args`, got {len(self.args)}: {self.args!r}"
            )
        return list(self.args)

    def usage_error(self, message: str) -> TaskError:
        """An error about the task's arguments, followed by its usage when known."""
        if self._usage:
            return TaskError(f"{message}\nusage: {self._usage}")
        return TaskError(message)

    def resolve(self, path: str) -> str:
        """A project-relative or workspace path as a workspace path; ``..`` never
        climbs above the root."""
        if path.startswith("/"):
            return _normalise(path)
        return _normalise(f"{self.project_dir}/{path}")

    def relative(self, path: str) -> Optional[str]:
        """A workspace path relative to the project, or ``None`` outside it."""
        if self.project_dir == "/":
            return path.lstrip("/")
        prefix = self.project_dir.rstrip("/") + "/"
        return path[len(prefix):] if path.startswith(prefix) else None

    def inputs_under(self, directory: str) -> list[str]:
        """The declared inputs under ``directory`` (project-relative or workspace),
        sorted."""
        base = self.resolve(directory).rstrip("/") + "/"
        return [p for p in self.inputs if p.startswith(base)]

    def host_path(self, path: str) -> str:
        """Where workspace path ``path`` is on this filesystem (``/`` under wask)."""
        return os.path.join(self._root, self.resolve(path).lstrip("/"))

    def read(self, path: str) -> bytes:
        """The bytes of an input (a project-relative or workspace path)."""
        resolved = self.resolve(path)
        try:
            with open(self.host_path(resolved), "rb") as f:
                return f.read()
        except OSError as e:
            hint = ""
            if isinstance(e, FileNotFoundError):
                hint = " (only declared inputs exist in the sandbox: is it in the task's `inputs`?)"
            raise TaskError(f"cannot read {resolved}: {_io_words(e)}{hint}") from None

    def read_text(self, path: str) -> str:
        """An input as UTF-8 text."""
        data = self.read(path)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise TaskError(f"{self.resolve(path)} is not valid UTF-8 text") from None

    def write_output(self, path: str, contents: bytes | str) -> None:
        """Writes an output file, making its parent directories."""
        resolved = self.resolve(path)
        target = self.host_path(resolved)
        data = contents.encode("utf-8") if isinstance(contents, str) else contents
        try:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "wb") as f:
                f.write(data)
        except OSError as e:
            raise TaskError(
                f"cannot write {resolved}: {_io_words(e)} (a task may write only under its declared `outputs`)"
            ) from None

    def env(self, name: str) -> str:
        """The environment variable ``name``, which the task must allow; if it is
        absent, an error saying how."""
        value = os.environ.get(name)
        if value is None:
            raise TaskError(
                f"the environment variable {name} is not set: a task sees only the variables it allows; "
                f'add `env.from_host = ["{name}"]` to the task in wask.toml (and set it where wask runs), '
                "or give it a value with `env.set`"
            )
        return value

    def env_opt(self, name: str) -> Optional[str]:
        """The environment variable ``name`` if it is set."""
        return os.environ.get(name)


def log(message: object) -> None:
    """A line on stderr, which wask shows as ``[project:task] message`` and replays on
    a cache hit."""
    print(message, file=sys.stderr, flush=True)


def main(
    body: Callable[[Task], object],
    usage: Optional[str] = None,
    task: Optional[Task] = None,
) -> int:
    """Loads the task (or takes ``task``), runs ``body`` with it, and returns the exit
    status: 0 when it returned, 1 when it raised (printed as one ``error:`` line; any
    other exception too, with its type, so a bug is one readable line and not a
    trap)."""
    try:
        body(task if task is not None else Task.load(usage))
        return 0
    except TaskError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
    except Exception as e:  # noqa: BLE001 - every failure is the task's, said once
        print(f"error: the task raised {type(e).__name__}: {e}", file=sys.stderr, flush=True)
    return 1
