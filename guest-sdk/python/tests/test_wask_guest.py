"""The Python SDK's behaviour, natively: what a task sees through it, and what it
says when something is wrong (the same promises as the Rust SDK's tests)."""

import io
import json
import os
import sys
import tempfile
import unittest
from contextlib import redirect_stderr
from unittest import mock

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import wask_guest  # noqa: E402


class Workspace(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.root = self.dir.name
        os.makedirs(os.path.join(self.root, "site/pages"))
        with open(os.path.join(self.root, "site/pages/a.md"), "w") as f:
            f.write("# A\n")
        self.task = wask_guest.Task.from_parts(
            self.root, "/site", ["pages", "dist/out.txt"], ["/site/pages/a.md", "/other/b.md"]
        )

    def tearDown(self):
        self.dir.cleanup()

    def test_paths_resolve_from_the_project_and_never_climb_above_the_root(self):
        self.assertEqual(self.task.resolve("pages/a.md"), "/site/pages/a.md")
        self.assertEqual(self.task.resolve("../../../etc/passwd"), "/etc/passwd")
        self.assertEqual(self.task.resolve("./a/./b/../c"), "/site/a/c")
        self.assertEqual(self.task.relative("/site/pages/a.md"), "pages/a.md")
        self.assertIsNone(self.task.relative("/site-old/a"))
        self.assertEqual(self.task.inputs_under("pages"), ["/site/pages/a.md"])
        self.assertEqual(self.task.inputs_under("/"), ["/other/b.md", "/site/pages/a.md"])

    def test_reads_and_writes_with_parent_directories(self):
        self.assertEqual(self.task.read_text("pages/a.md"), "# A\n")
        self.task.write_output("dist/deep/out.txt", "hello")
        with open(os.path.join(self.root, "site/dist/deep/out.txt")) as f:
            self.assertEqual(f.read(), "hello")

    def test_a_missing_input_names_it_and_hints_at_inputs_without_an_errno(self):
        with self.assertRaises(wask_guest.TaskError) as caught:
            self.task.read("missing.md")
        message = str(caught.exception)
        self.assertIn("/site/missing.md", message)
        self.assertIn("`inputs`", message)
        self.assertNotIn("Errno", message)

    def test_args_exact_reports_the_count_and_the_usage(self):
        self.assertEqual(self.task.args_exact(2), ["pages", "dist/out.txt"])
        task = wask_guest.Task("/", "/", ["a"], [], [], usage="args = [SRC, OUT]")
        with self.assertRaises(wask_guest.TaskError) as caught:
            task.args_exact(2)
        self.assertIn("expected 2", str(caught.exception))
        self.assertIn("usage: args = [SRC, OUT]", str(caught.exception))

    def test_an_absent_variable_names_the_line_to_add(self):
        with mock.patch.dict(os.environ, {}, clear=True):
            with self.assertRaises(wask_guest.TaskError) as caught:
                self.task.env("WASK_SDK_TEST")
            self.assertIn('env.from_host = ["WASK_SDK_TEST"]', str(caught.exception))
            self.assertIsNone(self.task.env_opt("WASK_SDK_TEST"))
        with mock.patch.dict(os.environ, {"WASK_SDK_TEST": "teal"}):
            self.assertEqual(self.task.env("WASK_SDK_TEST"), "teal")

    def test_main_turns_failures_into_one_line_and_status_1(self):
        def fails(task):
            raise wask_guest.TaskError("no pages found")

        def bug(task):
            return {}["missing"]

        for body, expected in [(fails, "error: no pages found\n"), (bug, "error: the task raised KeyError")]:
            err = io.StringIO()
            with redirect_stderr(err):
                status = wask_guest.main(body, task=self.task)
            self.assertEqual(status, 1)
            self.assertTrue(err.getvalue().startswith(expected), err.getvalue())
            self.assertEqual(err.getvalue().count("\n"), 1)
        self.assertEqual(wask_guest.main(lambda task: None, task=self.task), 0)

    def test_load_reads_the_description_wask_writes(self):
        description = {"wask_task": 1, "project_dir": "/p", "inputs": ["/p/b", "/p/a"], "outputs": ["/p/out/**"]}
        path = os.path.join(self.root, "task.json")
        with open(path, "w") as f:
            json.dump(description, f)
        with mock.patch.object(wask_guest, "TASK_FILE", path), mock.patch.object(sys, "argv", ["task.wasm", "x"]):
            task = wask_guest.Task.load()
        self.assertEqual((task.project_dir, task.inputs, task.args), ("/p", ["/p/a", "/p/b"], ["x"]))
        with mock.patch.object(wask_guest, "TASK_FILE", os.path.join(self.root, "none.json")):
            with self.assertRaises(wask_guest.TaskError) as caught:
                wask_guest.Task.load()
            self.assertIn("is this running under wask?", str(caught.exception))


if __name__ == "__main__":
    unittest.main()
