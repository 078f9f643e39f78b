"""Arms as HTTP services (platform/serve.py) and the HTTP arm of the A/B (trainables/music/http_arm.py),
over the course's protocol: POST /next/<user> and /last/<user> with {"track", "time"}."""

import json
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from envs import music
from platform import ab, serve

ROOT = Path(__file__).resolve().parent.parent
SMALL = ["--set", "tracks=600", "--set", "artists=60"]


def served_outcome(arm_name: str, users: int, cfg: music.MusicConfig) -> tuple[music.Outcome, serve.Service]:
    """The simulator run against a Service (no HTTP: its state and batching alone)."""
    service = serve.Service(ab.build_arm(arm_name, cfg, 300, 101), cfg, seed=0)

    def recommend(s: music.Sessions) -> np.ndarray:
        rows = np.random.default_rng(int(s.steps.sum())).permutation(len(s.user))  # any order of arrival
        answers = np.empty(len(s.user), np.int64)
        answers[rows] = service.next([(int(s.user[i]), int(s.last[i]), float(s.last_listened[i])) for i in rows])
        return answers

    def end(s: music.Sessions) -> None:
        for user, track, listened in zip(s.user, s.last, s.last_listened):
            service.last(int(user), int(track), float(listened))

    return music.simulate(cfg, recommend, 0, np.arange(users), on_end=end), service


@pytest.mark.parametrize("arm", ["sticky", "random", "i2i"])
def test_the_service_rebuilds_each_session_from_its_log_alone(arm):
    """Served from the log the service keeps (tracks, fractions, sessions ended), an arm chooses
    what it chooses in-process, track for track; every ended session's state is dropped."""
    cfg = music.MusicConfig(tracks=600, artists=60)
    served, service = served_outcome(arm, 300, cfg)
    direct = music.simulate(cfg, ab.build_arm(arm, cfg, 300, 101), 0, np.arange(300))
    assert len(served.played) == len(direct.played) > 300
    assert all(np.array_equal(a, b) for a, b in zip(served.played, direct.played))
    assert not service.live
    assert service.ended == dict(zip(*np.unique(direct.user, return_counts=True))) != {}


def test_a_retry_gets_the_same_answer_and_a_repeated_last_changes_nothing():
    cfg = music.MusicConfig(tracks=600, artists=60)
    service = serve.Service(ab.build_arm("random", cfg, 0, 0), cfg, seed=0)
    first = service.next([(7, 3, 0.9)])
    assert service.next([(7, 3, 0.9)]) == first  # the answer was lost: asked again, no new step
    assert len(service.live[7].played) == 1
    second = service.next([(7, first[0], 0.4)])
    assert len(service.live[7].played) == 2 and second != first
    service.last(7, second[0], 0.1)
    service.last(7, second[0], 0.1)
    assert service.ended == {7: 1} and not service.live
    assert "not in this catalogue" in service.check(7, 600, 0.5)
    assert "listened fraction" in service.check(7, 5, 1.5)


@pytest.mark.parametrize(
    "argv, problem",
    [
        (["nonsense"], "unknown arm 'nonsense'"),
        (["oracle"], "oracle cannot be served"),
        (["embed:/nowhere"], "embed:/nowhere: no such file or folder"),
        (["policy:/nowhere"], "policy:/nowhere: no tunelab experiment there"),
        (["sticky", "--set", "artist_decay=2"], "artist_decay"),
        (["sticky", "--port", "{busy}"], "cannot listen on 127.0.0.1:{busy}"),
        (["sticky", "--port", "99999"], "--port 99999 is not a port"),
    ],
)
def test_bad_serve_input_is_one_line(argv, problem, capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        code = serve.run(["music", *(a.replace("{busy}", port) for a in argv)])
    err = capsys.readouterr().err
    assert code == 2 and problem.replace("{busy}", port) in err and err.count("\n") == 1, err


class Served:
    """`python -m platform.serve music ARM --port 0 ...` as a subprocess: its URL, then SIGINT."""

    def __init__(self, *argv: str):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "platform.serve", "music", *argv, "--port", "0"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        line = self.process.stdout.readline()
        found = re.search(r"http://[\d.]+:\d+", line)
        assert found, line + self.process.stderr.read()
        self.url = found.group(0)

    def status(self) -> dict:
        with urllib.request.urlopen(self.url + "/", timeout=10) as reply:
            return json.loads(reply.read())

    def stop(self) -> str:
        """Ctrl-C: a graceful shutdown (uvicorn re-raises the signal after it); stderr."""
        self.process.send_signal(signal.SIGINT)
        code = self.process.wait(timeout=30)
        err = self.process.stderr.read()
        assert code in (0, -signal.SIGINT) and "Traceback" not in err, (code, err)
        return err


@pytest.mark.slow
def test_a_served_arm_gives_the_ab_its_in_process_figures(tmp_path, capsys):
    """The real server, in its own process on a free port: an A/B of it over HTTP equals the A/B of
    the same arm in-process, figure for figure, and every session it served was ended by /last."""
    server = Served("sticky", *SMALL)
    try:
        common = ["--users", "600", "--storage", str(tmp_path), "--log", *SMALL]
        assert ab.run(["music", "random", server.url, "--name", "http", "--http-concurrency", "8", *common]) == 0
        status = server.status()
        # The same service asked to serve another population's A/B: refused before any user is sent.
        capsys.readouterr()
        other = ["music", "random", server.url, "--seed", "5", "--name", "other", *common]
        assert ab.run(other) == 2
        err = capsys.readouterr().err
        assert "the service reports seed 0, the A/B tests population 5" in err and err.count("\n") == 1, err
        assert not (tmp_path / "other").exists() and server.status()["answered"] == status["answered"]
    finally:
        server.stop()
    assert (status["seed"], status["populations"]) == (0, {})  # sticky learned from no logs
    assert ab.run(["music", "random", "sticky", "--name", "local", *common]) == 0
    capsys.readouterr()
    http, local = (json.loads((tmp_path / n / "ab.json").read_text()) for n in ("http", "local"))
    drop = ("seconds",)
    figures = {k: v for k, v in http["arms"][server.url].items() if k not in drop}
    assert figures == {k: v for k, v in local["arms"]["sticky"].items() if k not in drop}
    assert figures["users"] > 250 and figures["failed_users"] == 0
    assert http["effects"][server.url] == local["effects"]["sticky"]
    recorded = next(a for a in http["settings"]["arms"] if a["spec"] == server.url)
    assert recorded["settings"]["served"] == {"arm": "sticky", "seed": 0}  # what the service said it served
    import pandas as pd

    sessions = pd.read_parquet(tmp_path / "http" / "sessions.parquet")
    mine = sessions[sessions["arm"] == server.url]
    assert status["live_sessions"] == 0  # each session's /last dropped its state
    assert status["answered"] == (mine["step"] > 0).sum()  # one /next per track after a session's first
    assert status["batches"] < status["answered"]  # concurrent requests were answered together


class Backlog(ThreadingHTTPServer):
    request_queue_size = 256  # the standard library's 5 resets the A/B's concurrent connections


class Flaky(BaseHTTPRequestHandler):
    """A service that fails some users: a malformed reply to users 0 mod 6, a 500 to users 1 mod 6,
    another track of the last track's artist to the rest."""

    protocol_version = "HTTP/1.1"  # kept-alive connections, as a real service
    attempts: dict = {}
    lock = threading.Lock()
    broken = True  # False: every user answered well

    def do_POST(self):
        kind, user = self.path.strip("/").split("/")
        user = int(user)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.lock:
            self.attempts[user] = self.attempts.get(user, 0) + 1
        status, reply = 200, {"user": user}
        if kind == "next":
            cat = music.catalogue_of(music.MusicConfig(tracks=600, artists=60))
            a = cat.artist[body["track"]]
            mates = cat.artist_tracks[cat.artist_offsets[a] : cat.artist_offsets[a + 1]]
            reply["track"] = int(mates[(user + int(body["time"] * 1000)) % len(mates)])
            if self.broken and user % 6 == 0:
                reply["track"] = "soon"
            elif self.broken and user % 6 == 1:
                status, reply = 500, {"detail": "down"}
        payload = json.dumps(reply).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def test_users_whose_requests_fail_are_counted_and_the_sample_ratio_check_fires(tmp_path, capsys):
    server = Backlog(("127.0.0.1", 0), Flaky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        code = ab.run(["music", "random", url, "--users", "600", "--storage", str(tmp_path), "--name", "flaky",
                       "--http-retries", "1", *SMALL])  # fmt: skip
    finally:
        server.shutdown()
    out = capsys.readouterr().out
    assert code == 0, out
    result = json.loads((tmp_path / "flaky" / "ab.json").read_text())
    assigned = np.arange(600)[ab.assign(np.arange(600), 2, "tunelab") == 1]
    bad = assigned[assigned % 6 <= 1]
    assert result["arms"][url]["failed_users"] == len(bad) > 0
    assert result["arms"][url]["users"] == len(assigned) - len(bad)
    assert all(Flaky.attempts[u] == 2 for u in bad if u % 6 == 1)  # one retry each, then failed
    assert all(Flaky.attempts[u] == 1 for u in bad if u % 6 == 0)  # a malformed reply is not retried
    assert result["srm_p"] < ab.SRM_P and "SAMPLE RATIO MISMATCH" in out
    # one line naming the user and the reply
    first = result["arms"][url]["first_failure"]
    user = int(re.search(r"user (\d+):", first).group(1))
    if user % 6 == 0:
        assert first == f"{url}: user {user}: malformed reply to /next (a track in 0..599 expected): " + repr(
            {"user": user, "track": "soon"}
        )
    else:
        assert "answered 500" in first and "\n" not in first
    assert f"users failed, left out; the first: {first}" in out


class Status(BaseHTTPRequestHandler):
    """A service that only says what it serves (GET /): `status`, set by the test."""

    status: dict = {}

    def do_GET(self):
        payload = json.dumps(Status.status).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.mark.parametrize(
    "status, problem",
    [
        ({"arm": "sticky", "seed": 5}, "the service reports seed 5, the A/B tests population 0 (--seed)"),
        ({"arm": "i2i", "seed": 0, "populations": {"log": 0}}, "was trained on population 0 (log), the A/B's own"),
        ({"arm": "i2i", "seed": 0, "populations": {"log": 101}}, None),
        ({}, None),  # a service that reports nothing of itself is not checked
    ],
)
def test_a_served_arm_for_another_population_or_trained_on_this_one_is_refused(status, problem, tmp_path, capsys):
    """check_populations read `arm.populations`, which the HTTP arm lacked: a service was never checked."""
    Status.status = status
    server = ThreadingHTTPServer(("127.0.0.1", 0), Status)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        if problem is None:
            arm = ab.build_arm(url, music.MusicConfig(), 0, 0)
            ab.check_populations({url: arm}, 0)  # accepted
            assert arm.populations == status.get("populations", {})
            arm.close()
        else:
            code = ab.run(["music", "random", url, "--users", "20", "--storage", str(tmp_path), "--name", "x"])
            err = capsys.readouterr().err
            assert code == 2 and err.count("\n") == 1 and problem in err and f"arm {url}" in err, err
    finally:
        server.shutdown()


class Slow(Flaky):
    """A service that answers every user well but `slow`, whose requests it holds for `delay` seconds
    and then drops unanswered."""

    attempts: dict = {}
    broken, slow, delay = False, -1, 1.0

    def do_POST(self):
        user = int(self.path.rsplit("/", 1)[1])
        if user != self.slow:
            return super().do_POST()
        with self.lock:
            self.attempts[user] = self.attempts.get(user, 0) + 1
        self.rfile.read(int(self.headers["Content-Length"]))
        time.sleep(self.delay)
        self.close_connection = True  # the client has given up: no answer to write


def test_a_user_whose_service_times_out_is_retried_then_failed_and_the_ab_goes_on(tmp_path, capsys):
    """--http-timeout 0.2 against a service that takes 1 s for one user: the request is sent 1 +
    --http-retries times, then the user is recorded as failed with one line; every other user is served."""
    assigned = np.arange(120)[ab.assign(np.arange(120), 2, "tunelab") == 1]
    Slow.slow = int(assigned[3])
    server = Backlog(("127.0.0.1", 0), Slow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        code = ab.run(["music", "random", url, "--users", "120", "--storage", str(tmp_path), "--name", "slow",
                       "--http-timeout", "0.2", "--http-retries", "2", *SMALL])  # fmt: skip
    finally:
        server.shutdown()
    out = capsys.readouterr().out
    assert code == 0, out
    assert Slow.attempts[Slow.slow] == 3  # the first try and two retries
    assert all(Slow.attempts[u] >= 1 for u in assigned)  # the others were asked (and answered: below)
    figures = json.loads((tmp_path / "slow" / "ab.json").read_text())["arms"][url]
    assert (figures["failed_users"], figures["users"]) == (1, len(assigned) - 1)
    first = figures["first_failure"]
    assert first == f"{url}: user {Slow.slow}: /next failed 3 times, last: TimeoutError: timed out", first
    assert f"{url}: 1 users failed, left out; the first: {first}\n" in out
