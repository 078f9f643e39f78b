"""The HTTP arm: a recommender service, called over the course's protocol (platform/serve.py serves
any arm this way), as an arm of the A/B (platform/ab.py).

    POST /next/<user>  {"track": int, "time": float}  -> {"user": int, "track": int}
    POST /last/<user>  {"track": int, "time": float}  -> {"user": int}   (the session ended)
"""

import dataclasses
import http.client
import json
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from envs import music
from trainables.config import ConfigError

NEXT, LAST = "next", "last"  # the protocol's two endpoints: /next/<user>, /last/<user>


@dataclasses.dataclass(frozen=True)
class HttpSettings:
    """How the A/B calls a service (platform.ab --http-*)."""

    concurrency: int = 32
    """Requests in flight at once (threads, one kept-alive connection each)."""
    timeout: float = 10.0
    """Seconds to wait for one answer."""
    retries: int = 2
    """Further attempts after a connection error, a timeout or a 5xx; then the user is failed."""


class Failed(Exception):
    """A user's request that failed for good (the message is one line naming the user)."""


class HttpArm:
    """A recommender service as an arm: for each live session POST /next/<user> with the last track
    and its listened fraction, read the next track; when a session ends POST /last/<user>. Many
    sessions at once; a user whose request fails (after retries: no answer, a timeout, an error
    status, a malformed reply) is recorded in `failed` with the reason and not asked again: their
    sessions play a repeat of the last track (nothing listened), so they end within the patience
    budget, and the A/B leaves them out and counts them."""

    def __init__(self, url: str, settings: HttpSettings = HttpSettings()):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "http" or not parts.hostname or parts.query or parts.fragment:
            raise ConfigError(f"arm {url!r}: an HTTP arm is http://HOST:PORT[/PREFIX] (it calls /next and /last there)")
        self.url, self.settings = url, settings
        self.host, self.port, self.prefix = parts.hostname, parts.port or 80, parts.path.rstrip("/")
        self.failed: dict[int, str] = {}  # user -> why
        self.requests = 0
        self.local = threading.local()
        self.connections, self.lock = [], threading.Lock()  # every thread's, for close()
        self.pool = ThreadPoolExecutor(settings.concurrency, thread_name_prefix="http-arm")
        try:  # one request now, so a service that is not there is one clear line, not 10,000 failed users
            connection = http.client.HTTPConnection(self.host, self.port, timeout=settings.timeout)
            connection.request("GET", self.prefix + "/")
            payload = connection.getresponse().read()
            connection.close()
        except (OSError, http.client.HTTPException) as err:
            raise ConfigError(
                f"{url}: no service answers ({err}); start one: python -m platform.serve music ARM --port {self.port}"
            ) from None
        try:  # what the service says of itself (platform.serve: its arm, --seed, populations); {} if nothing
            status = json.loads(payload)
        except ValueError:
            status = {}
        self.status: dict = status if isinstance(status, dict) else {}

    @property
    def populations(self) -> dict:
        """The populations the served arm learned from or was selected on, as the service reports them
        (GET / "populations"; platform.ab refuses the arm if its own population is among them)."""
        return self.status.get("populations") or {}

    def _post(self, kind: str, user: int, track: int, listened: float) -> dict:
        """One request with retries; the reply's JSON object, or Failed naming the user."""
        body = json.dumps({"track": track, "time": listened})
        path = f"{self.prefix}/{kind}/{user}"
        why = ""
        for attempt in range(self.settings.retries + 1):
            if attempt:
                time.sleep(0.05 * 2 ** (attempt - 1))
            connection = getattr(self.local, "connection", None)
            if connection is None:
                connection = self.local.connection = http.client.HTTPConnection(
                    self.host, self.port, timeout=self.settings.timeout
                )
                with self.lock:
                    self.connections.append(connection)
            try:
                connection.request("POST", path, body, {"Content-Type": "application/json"})
                response = connection.getresponse()
                payload = response.read()
            except (OSError, http.client.HTTPException) as err:
                connection.close()
                self.local.connection = None
                why = f"{type(err).__name__}: {err}"
                continue
            self.requests += 1
            if response.status >= 500:
                why = f"answered {response.status}: {payload[:200]!r}"
                continue
            if response.status != 200:
                raise Failed(f"user {user}: /{kind} answered {response.status}: {payload[:200]!r}")
            try:
                reply = json.loads(payload)
                if not isinstance(reply, dict):
                    raise ValueError("not a JSON object")
                return reply
            except ValueError:
                raise Failed(f"user {user}: malformed reply to /{kind}: {payload[:200]!r}") from None
        raise Failed(f"user {user}: /{kind} failed {self.settings.retries + 1} times, last: {why}")

    def _next(self, user: int, track: int, listened: float, tracks: int) -> int:
        reply = self._post(NEXT, user, track, listened)
        pick = reply.get("track")
        if type(pick) is not int or not 0 <= pick < tracks:
            raise Failed(f"user {user}: malformed reply to /{NEXT} (a track in 0..{tracks - 1} expected): {reply!r}")
        return pick

    def _each(self, work, rows: np.ndarray) -> list:
        """work(row) for every row, `concurrency` at a time; Failed becomes the user's failure."""

        def chunk(part: np.ndarray) -> list:
            out = []
            for row in part:
                try:
                    out.append(work(row))
                except Failed as err:
                    out.append(err)
            return out

        parts = np.array_split(rows, min(self.settings.concurrency, len(rows))) if len(rows) else []
        return [x for part in self.pool.map(chunk, parts) for x in part]

    def __call__(self, s: music.Sessions) -> np.ndarray:
        users, last, listened = s.user, s.last, s.last_listened
        out = last.copy()  # the failed users' repeat
        ask = np.array([i for i, u in enumerate(users.tolist()) if u not in self.failed], np.int64)
        size = s.cat.size
        answers = self._each(lambda i: self._next(int(users[i]), int(last[i]), float(listened[i]), size), ask)
        for i, answer in zip(ask, answers):
            if isinstance(answer, Failed):
                self.failed[int(users[i])] = f"{self.url}: {answer}"
            else:
                out[i] = answer
        return out

    def end(self, s: music.Sessions) -> None:
        """The sessions of `s` ended: POST /last for each (the service drops their state)."""
        users, last, listened = s.user, s.last, s.last_listened
        ask = np.array([i for i, u in enumerate(users.tolist()) if u not in self.failed], np.int64)
        answers = self._each(lambda i: self._post(LAST, int(users[i]), int(last[i]), float(listened[i])), ask)
        for i, answer in zip(ask, answers):
            if isinstance(answer, Failed):
                self.failed[int(users[i])] = f"{self.url}: {answer}"

    def close(self) -> None:
        self.pool.shutdown()
        for connection in self.connections:
            connection.close()
