"""The README's commands, run as a new user runs them, serving included.

A copy of the repository as committed (its tracked files, as in a fresh clone) gets the
README's first command, ``bash scripts/demo.sh``, exactly as the README writes it (with only a
free port added): it installs into the copy's own ``.venv``, builds the demo agency and serves
it. The test waits for the sign-in page and ``/healthz``, signs in with the supervisor token the
demo printed, opens the top flag, and stops the server. Then the README's five-minute tour runs
in the same copy, command by command as written, ending with ``scripts/ews serve``, which is
signed into and browsed the same way.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
pytestmark = pytest.mark.slow


def readme_block(after: str) -> list[str]:
    """The command lines of the first ```bash block after the heading or text ``after``
    (comments stripped)."""
    text = README.read_text()
    start = text.index(after)
    block = re.search(r"```bash\n(.*?)```", text[start:], flags=re.S)
    assert block, f"no bash block after {after!r} in the README"
    lines = [line.split("#", 1)[0].strip() for line in block.group(1).splitlines()]
    return [line for line in lines if line]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The repository's tracked files (as a fresh clone has them) in a new folder."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs the git checkout")
    files = (
        subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True)
        .stdout.decode()
        .split("\0")
    )
    dest = tmp_path_factory.mktemp("clone") / "ews"
    for name in filter(None, files):
        src = ROOT / name
        if src.is_file():  # a file deleted in the work tree is not in a clone of it either
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of a new shell: none of this test run's workspace or venv settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EWS_", "VIRTUAL_ENV"))}
    env.pop("PYTHONPATH", None)
    env.update(extra)
    return env


class Served:
    """A command that ends by serving: its output, and a stop that checks it exits cleanly."""

    def __init__(self, command: str, cwd: Path, log: Path, port: int) -> None:
        self.log, self.port = log, port
        self.base = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(
            ["bash", "-c", command],
            cwd=cwd,
            env=clean_env(),
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_serving(self, timeout: float) -> None:
        """Until the command says it serves and /healthz answers; fail with its output if it
        exits first."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                pytest.fail(f"exited {self.proc.returncode} before serving:\n{self.output()}")
            if "ews serving on" in self.output():
                try:
                    if httpx.get(f"{self.base}/healthz", timeout=2).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
            time.sleep(1)
        pytest.fail(f"not serving after {timeout:.0f} s:\n{self.output()[-4000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)  # Ctrl-C, as the README says
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
                pytest.fail("Ctrl-C did not stop the server in 30 s")


def sign_in_and_open_top_flag(base: str, token: str) -> str:
    """Sign in through the page as a browser does, open the flag list and its first officer;
    return the officer page's HTML."""
    with httpx.Client(base_url=base, follow_redirects=True, timeout=60) as web:
        assert web.get("/").status_code == 200  # the sign-in page
        page = web.post(
            "/signin", data={"token": token}, headers={"Origin": base, "Referer": f"{base}/signin"}
        )
        assert page.status_code == 200, page.text[:500]
        assert str(page.url).endswith("/flags") or "/flags" in str(page.url), page.url
        links = re.findall(r'href="(/officers/[^"]+)"', page.text)
        assert links, f"no flagged officer on the flag list:\n{page.text[:2000]}"
        officer = web.get(links[0].replace("&amp;", "&"))
        assert officer.status_code == 200, officer.text[:500]
        return officer.text


@pytest.fixture(scope="module")
def demo(clone: Path) -> Iterator[Served]:
    (first,) = [c for c in readme_block("## Two commands") if "demo.sh" in c]
    assert first == "bash scripts/demo.sh", first
    port = free_port()
    served = Served(f"{first} --port {port}", clone, clone.parent / "demo.log", port)
    try:
        served.wait_serving(timeout=1200)  # an install, then about two minutes of work
        yield served
    finally:
        served.stop()


def test_the_demo_serves_and_a_supervisor_opens_the_top_flag(demo: Served) -> None:
    out = demo.output()
    assert out.count("ews serving on") == 1
    token = re.search(r"supervisor of unit \S+: (\S+)", out)
    assert token, out[-3000:]
    html = sign_in_and_open_top_flag(demo.base, token.group(1))
    assert "Why" in html or "reason" in html.lower()
    reviewer = re.search(r"credentialing reviewer:\s+(\S+)", out)
    assert reviewer, out[-3000:]
    sign_in_and_open_top_flag(demo.base, reviewer.group(1))


def test_a_second_server_on_the_same_port_says_so_and_exits_1(demo: Served, clone: Path) -> None:
    busy = subprocess.run(  # the demo is serving on demo.port
        ["scripts/ews", "serve", "--port", str(demo.port)],
        cwd=clone,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert busy.returncode == 1, busy.stdout + busy.stderr
    assert "already in use" in busy.stderr and "Traceback" not in busy.stderr
    assert "serving" not in busy.stdout


def test_the_tour_runs_as_written_and_serves(demo: Served, clone: Path) -> None:
    demo.stop()  # the tour's `scripts/ews serve` takes the README's port of its own
    commands = readme_block("**A five-minute tour**")
    stand_in = re.search(r"`(scripts/ews synth my-agency [^`]+)`", README.read_text())
    assert stand_in, "the tour's stand-in package command"
    log = clone.parent / "tour.log"
    for command in [stand_in.group(1), *commands[:-1]]:
        done = subprocess.run(
            ["bash", "-c", command],
            cwd=clone,
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=900,
        )
        with log.open("a") as f:
            f.write(f"$ {command}\n{done.stdout}{done.stderr}\n")
        assert done.returncode == 0, f"{command}: exit {done.returncode}\n{done.stderr[-3000:]}"
        if command.startswith("scripts/ews users add"):
            token = done.stdout.strip().splitlines()[-1]
    assert commands[-1] == "scripts/ews serve", commands[-1]
    port = free_port()
    served = Served(f"{commands[-1]} --port {port}", clone, clone.parent / "serve.log", port)
    try:
        served.wait_serving(timeout=120)
        sign_in_and_open_top_flag(served.base, token)
    finally:
        served.stop()
