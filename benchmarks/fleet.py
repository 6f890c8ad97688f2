"""The orchestrator's side of the agents: start them, wait until they are ready, say go,
collect their results, kill one on purpose. Every wait has a timeout."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = str(Path(__file__).resolve().parents[1])


class AgentError(RuntimeError):
    """An agent failed; the message says which and why."""


class Agent:
    """One ``python -m benchmarks.agent`` process."""

    def __init__(self, label: str, spec: dict[str, Any]) -> None:
        self.label = label
        self.spec = spec
        self.proc: asyncio.subprocess.Process | None = None
        self.ready: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.done: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.progress = 0
        self.recv_keys: list[int] = []
        self.recv_times: list[int] = []
        self.acked_upto = 0  # how many of recv_keys the consumer's last ack covered
        self._other: dict[str, asyncio.Future[dict[str, Any]]] = {}  # other message types
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "benchmarks.agent", json.dumps(self.spec),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=self._stderr, env=env, limit=1 << 26,
        )
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while True:
            line = await self.proc.stdout.readline()
            if not line:
                break
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            kind = msg.get("type")
            if kind == "ready" and not self.ready.done():
                self.ready.set_result(msg)
            elif kind == "progress":
                self.progress = int(msg["n"])
            elif kind == "recv":
                self.recv_keys.extend(msg["keys"])
                self.recv_times.extend(msg["t"])
            elif kind == "acked":
                self.acked_upto = max(self.acked_upto, int(msg["n"]))
            elif kind == "result" and not self.done.done():
                self.recv_keys.extend(msg.pop("keys", []))
                self.recv_times.extend(msg.pop("t", []))
                self.done.set_result(msg)
            elif kind == "error":
                err = AgentError(f"{self.label}: {msg.get('message')}\n{msg.get('trace', '')}")
                for fut in self._futures():
                    if not fut.done():
                        fut.set_exception(err)
            elif isinstance(kind, str) and kind not in ("ready", "result"):
                fut = self._future(kind)
                if not fut.done():
                    fut.set_result(msg)
        await self.proc.wait()
        err = AgentError(f"{self.label} exited (code {self.proc.returncode}) early"
                         f"{self._stderr_tail()}")
        for fut in self._futures():
            if not fut.done():
                fut.set_exception(err)
                fut.exception()  # mark retrieved: the waiter may be gone

    def _future(self, kind: str) -> asyncio.Future[dict[str, Any]]:
        if kind not in self._other:
            self._other[kind] = asyncio.get_running_loop().create_future()
        return self._other[kind]

    def _futures(self) -> list[asyncio.Future[dict[str, Any]]]:
        return [self.ready, self.done, *self._other.values()]

    def _stderr_tail(self) -> str:
        with contextlib.suppress(OSError, ValueError):
            self._stderr.seek(0)
            text = self._stderr.read().decode(errors="replace").strip()
            if text:
                return ":\n" + "\n".join(text.splitlines()[-8:])
        return ""

    def send(self, obj: dict[str, Any]) -> None:
        if self.proc is not None and self.proc.stdin is not None and self.running:
            with contextlib.suppress(Exception):
                self.proc.stdin.write((json.dumps(obj) + "\n").encode())

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def wait_ready(self, timeout: float) -> dict[str, Any]:
        try:
            return await asyncio.wait_for(asyncio.shield(self.ready), timeout)
        except TimeoutError:
            raise AgentError(f"{self.label} not ready after {timeout:.0f} s") from None

    async def message(self, kind: str, timeout: float) -> dict[str, Any]:
        """The first message of type ``kind`` (a role's own step, e.g. ``sent``)."""
        try:
            return await asyncio.wait_for(asyncio.shield(self._future(kind)), timeout)
        except TimeoutError:
            raise AgentError(f"{self.label} sent no {kind} after {timeout:.0f} s") from None

    async def result(self, timeout: float) -> dict[str, Any]:
        try:
            return await asyncio.wait_for(asyncio.shield(self.done), timeout)
        except TimeoutError:
            raise AgentError(f"{self.label} gave no result after {timeout:.0f} s") from None

    def kill(self) -> None:
        """SIGKILL it (the failover workload's crash)."""
        if self.running:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)

    async def eof(self, timeout: float = 10) -> None:
        """Wait until its output is fully read (after it exited)."""
        if self._reader is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._reader), timeout)

    async def close(self) -> None:
        if self.proc is not None:
            if self.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.terminate()
                try:
                    await asyncio.wait_for(self.proc.wait(), 5)
                except TimeoutError:
                    with contextlib.suppress(ProcessLookupError):
                        self.proc.kill()
                    await self.proc.wait()
            if self.proc.stdin is not None:
                with contextlib.suppress(Exception):
                    self.proc.stdin.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(BaseException):
                await self._reader
        for fut in self._futures():
            if fut.done() and not fut.cancelled():
                fut.exception()  # retrieved, so asyncio does not warn
        self._stderr.close()


class Fleet:
    """The agents of one workload step; closes them all, whatever happens."""

    def __init__(self) -> None:
        self.agents: list[Agent] = []

    async def spawn(self, label: str, spec: dict[str, Any]) -> Agent:
        agent = Agent(label, spec)
        self.agents.append(agent)
        await agent.start()
        return agent

    async def __aenter__(self) -> Fleet:
        return self

    async def __aexit__(self, *exc: object) -> None:
        for agent in self.agents:
            await agent.close()
