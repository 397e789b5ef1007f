"""The real ``tensorboard`` server as a subprocess, queried through the HTTP API its dashboards
use (shared by tests/callbacks/test_tensorboard_server.py and tests/test_cli_output.py).

The server runs with its default loader (the Rust ``tensorboard-data-server``, the "fast"
loader of ``--load_fast=auto``): the Scalars dashboard, the HParams dashboard (the POST
requests its query pane sends), the Text dashboard.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

TENSORBOARD = Path(sys.executable).parent / "tensorboard"
STATUSES = ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"]
WAIT_S = 180.0  # TensorBoard imports TensorFlow before it serves: slow on a busy machine
LOAD_S = 30.0  # then it loads the logdir in the background


# --------------------------------------------------------------------------- the server


class Server:
    """A ``tensorboard --logdir`` subprocess and its HTTP API."""

    def __init__(self, logdir: Path, output: Path) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.output = output
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
        with open(output, "wb") as log:
            # the default loader: no --load_fast flag
            self.process = subprocess.Popen(
                [
                    str(TENSORBOARD),
                    "--logdir",
                    str(logdir),
                    "--port",
                    str(self.port),
                    "--host",
                    "127.0.0.1",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
            )

    def log(self) -> str:
        return self.output.read_text(errors="replace")

    def wait_until_serving(self) -> None:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"tensorboard exited with {self.process.returncode}:\n{self.log()[-3000:]}"
                )
            try:
                self.get("/data/runs")
                return
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.5)
        raise AssertionError(f"tensorboard did not answer in {WAIT_S} s:\n{self.log()[-3000:]}")

    def get(self, route: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}{route}{query}", timeout=30) as response:
            return json.loads(response.read())

    def post(self, route: str, body: dict) -> Any:
        """POST ``body`` as the dashboards do (JSON as text/plain)."""
        request = urllib.request.Request(
            f"{self.url}{route}",
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Content-Type": "text/plain"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def eventually(self, fetch: Callable[[], Any], ready: Callable[[Any], bool]) -> Any:
        """``fetch()`` until ``ready`` holds on its answer (the server loads the logdir in the
        background after it starts serving) or ``LOAD_S`` pass; returns the last answer."""
        deadline = time.monotonic() + LOAD_S
        while True:
            answer = fetch()
            if ready(answer) or time.monotonic() > deadline:
                return answer
            time.sleep(0.5)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=20)

    # --- the dashboards' queries

    def scalar_tags(self) -> dict[str, list[str]]:
        return {run: sorted(tags) for run, tags in self.get("/data/plugin/scalars/tags").items()}

    def scalars(self, run: str, tag: str) -> list[tuple[int, float]]:
        rows = self.get("/data/plugin/scalars/scalars", run=run, tag=tag)
        return [(int(step), float(value)) for _, step, value in rows]

    def experiment(self) -> dict:
        return self.post(
            "/data/plugin/hparams/experiment", {"experimentName": "", "hparamsLimit": 1000}
        )

    def session_groups(self, experiment: dict) -> dict[str, dict]:
        """The HParams table: session group name -> {"hparams": ..., "metrics": {tag: value}},
        asked for as the dashboard's query pane does (every hparam and metric column)."""
        columns = [
            {"hparam": h["name"], "includeInResult": True} for h in experiment["hparamInfos"]
        ]
        columns += [
            {"metric": m["name"], "includeInResult": True} for m in experiment["metricInfos"]
        ]
        answer = self.post(
            "/data/plugin/hparams/session_groups",
            {
                "experimentName": "",
                "allowedStatuses": STATUSES,
                "colParams": columns,
                "startIndex": 0,
                "sliceSize": 100,
            },
        )
        return {
            group["name"]: {
                "hparams": group["hparams"],
                "sessions": [s["name"] for s in group["sessions"]],
                "metrics": {m["name"]["tag"]: m["value"] for m in group.get("metricValues", [])},
            }
            for group in answer.get("sessionGroups", [])
        }

    def text(self, run: str, tag: str) -> list[tuple[int, str]]:
        rows = self.get("/data/plugin/text/text", run=run, tag=tag)
        return [(int(r["step"]), r["text"]) for r in rows]


@contextlib.contextmanager
def tensorboard_servers(tmp_path_factory) -> Iterator[Callable[[Path], Server]]:
    """``serve(logdir)`` starts ``tensorboard --logdir logdir`` and waits until it answers;
    every server started is stopped when the block ends, also when a test fails (the body of
    the tests' module-scoped ``serve`` fixtures)."""
    servers: list[Server] = []

    def start(logdir: Path) -> Server:
        server = Server(logdir, tmp_path_factory.mktemp("tb") / "tensorboard.log")
        servers.append(server)
        server.wait_until_serving()
        return server

    try:
        yield start
    finally:
        for server in servers:
            server.stop()
