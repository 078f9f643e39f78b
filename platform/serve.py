"""`python -m platform.serve music ARM [--port N] [--host H] [arm settings]`: any music arm as a real
HTTP service speaking the course's protocol (the A/B calls one: trainables/music/http_arm.py).

    python -m platform.serve music sticky --port 5000
    python -m platform.serve music embed:~/ray_results/music-pbt-...   # a learned arm, from its checkpoint
    python -m platform.ab music sticky http://localhost:5000            # the service as an A/B arm

The protocol (the course's music recommender service and its simulator):
  POST /next/<user>  {"track": int, "time": float}  -> {"user": int, "track": int}
      `track` is the track the user just played and `time` the fraction of it listened to; the
      answer is the track to play next. The first request of a session carries its first track.
  POST /last/<user>  {"track": int, "time": float}  -> {"user": int}
      the session ended after that track: the service drops the user's session state.
  GET /   -> {"status": "ready", "arm": ARM, "seed": SEED, "populations": {ROLE: SEED}, ...}
      the A/B refuses a service whose seed is not its --seed or whose arm learned from its population.

The service keeps what a real one would log: per live session the tracks played and the fractions
listened, and per user how many sessions have ended (the next one's number). From those alone it
rebuilds the session for the arm; the simulator's hidden state (session vector, listening sigmoid,
patience) never reaches it, so `oracle` cannot be served. Requests that arrive together are
answered by one call of the arm over all of them (arms are vectorised). Arms that draw random
numbers hash them from (user, session, step) with a constant seed, as in-process (nothing of the
population), so a served arm gives the A/B the same figures over HTTP as in-process. `--seed` is the
population the A/B tests on: an arm trained on it is refused. One process, state in memory.
"""

import argparse
import asyncio
import contextlib
import dataclasses
import socket
import sys

import numpy as np

from envs import music
from platform import ab
from trainables.config import ConfigError
from trainables.music import arms as music_arms
from trainables.music.http_arm import LAST, NEXT

NOT_SERVABLE = {"oracle": "it reads the simulator's hidden session vector, which no service sees"}


# ----------------------------------------------------------------------------- the service


@dataclasses.dataclass
class Live:
    """One user's live session, as the service logged it."""

    number: int  # the session's number among the user's sessions (0 first)
    played: list  # track ids in order, the first included
    listened: list  # fraction of each listened to
    asked: tuple | None = None  # (track, time) of the last /next and its answer: a retry is answered again
    answer: int = -1


class Service:
    """The state of a served arm: live sessions by user, ended sessions per user."""

    def __init__(self, arm, cfg: music.MusicConfig, seed: int):
        self.arm, self.cfg, self.seed = arm, cfg, seed
        self.meta = music.catalogue_of(cfg).metadata  # what a service knows of the catalogue
        self.tracks = self.meta.size
        self.live: dict[int, Live] = {}
        self.ended: dict[int, int] = {}  # user -> sessions ended (the next session's number)

    def check(self, user: int, track: int, listened: float) -> str | None:
        """What is wrong with a request, or None."""
        if not 0 <= track < self.tracks:
            return f"track {track} is not in this catalogue (0..{self.tracks - 1})"
        if not 0.0 <= listened <= 1.0:
            return f"time {listened} is not a listened fraction in [0, 1]"
        live = self.live.get(user)
        if live is not None and len(live.played) >= self.cfg.max_steps and (track, listened) != live.asked:
            return f"user {user}'s session already has {self.cfg.max_steps} tracks (max_steps); POST /last first"
        return None

    def next(self, requests: list[tuple[int, int, float]]) -> list[int]:
        """Answers to (user, track, time) requests of distinct users: one arm call over all of them."""
        answers, ask = [-1] * len(requests), []
        for i, (user, track, listened) in enumerate(requests):
            live = self.live.get(user)
            if live is None:
                self.live[user] = Live(self.ended.get(user, 0), [track], [listened])
            elif (track, listened) == live.asked and live.answer != track:
                answers[i] = live.answer  # a retry of the last request: its answer again, no new step
                continue
            else:
                live.played.append(track)
                live.listened.append(listened)
            self.live[user].asked = (track, listened)
            ask.append(i)
        if ask:
            users = [requests[i][0] for i in ask]
            picks = np.asarray(self.arm(self.sessions(users)), np.int64)
            for i, user, pick in zip(ask, users, picks.tolist()):
                self.live[user].answer = answers[i] = pick
        return answers

    def last(self, user: int, track: int, listened: float) -> None:
        """The session ended: drop it (a repeated /last finds none and changes nothing)."""
        if self.live.pop(user, None) is not None:
            self.ended[user] = self.ended.get(user, 0) + 1

    def sessions(self, users: list[int]) -> music.SessionView:
        """The live sessions of `users` as one batch, rebuilt from the service's log alone."""
        n, width = len(users), max(len(self.live[u].played) for u in users)
        played, listened = np.full((n, width), -1, np.int64), np.zeros((n, width), np.float32)
        for row, user in enumerate(users):
            live = self.live[user]
            played[row, : len(live.played)] = live.played
            listened[row, : len(live.listened)] = live.listened
        user = np.asarray(users, np.int64)
        session = np.array([self.live[u].number for u in users], np.int64)
        steps = np.array([len(self.live[u].played) for u in users], np.int64)
        artists = np.where(played >= 0, self.meta.artist[np.maximum(played, 0)], -1)
        keys = music.arm_keys(user, session)
        return music.SessionView(user, session, steps, played, listened, artists, self.meta, keys)


class Batcher:
    """Collects the /next requests that reach the event loop together and answers them with one
    Service.next call (a user's second request in a batch waits for the next call)."""

    def __init__(self, service: Service):
        self.service, self.pending, self.scheduled = service, [], False
        self.calls = self.answered = 0

    async def ask(self, user: int, track: int, listened: float) -> int:
        future = asyncio.get_running_loop().create_future()
        self.pending.append(((user, track, listened), future))
        if not self.scheduled:
            self.scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)
        return await future

    def flush(self) -> None:
        batch, seen, later = [], set(), []
        for item in self.pending:
            (later if item[0][0] in seen else batch).append(item)
            seen.add(item[0][0])
        self.pending, self.scheduled = later, False
        if later:
            self.scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)
        try:
            answers = self.service.next([request for request, _ in batch])
        except Exception as err:  # the arm failed: every request of the batch gets a 500 naming why
            for _, future in batch:
                future.set_exception(err)
            return
        self.calls, self.answered = self.calls + 1, self.answered + len(batch)
        for (_, future), answer in zip(batch, answers):
            future.set_result(answer)


def app(service: Service, name: str, ready: str = ""):
    """The ASGI application (FastAPI) serving `service`; `ready` is printed once it accepts requests."""
    import contextlib

    from fastapi import FastAPI, HTTPException
    from pydantic import BaseModel, StrictInt

    class Listen(BaseModel):
        track: StrictInt
        time: float

    batcher = Batcher(service)
    # what the arm learned from or was selected on: the A/B refuses it when its population is among them
    populations = {role: int(seed) for role, seed in getattr(service.arm, "populations", {}).items()}

    @contextlib.asynccontextmanager
    async def lifespan(_):
        if ready:
            print(ready, flush=True)
        yield

    api = FastAPI(title=f"tunelab music arm {name}", docs_url=None, redoc_url=None, lifespan=lifespan)

    @api.get("/")
    async def hello() -> dict:
        return {"status": "ready", "arm": name, "seed": service.seed, "populations": populations,
                "tracks": service.tracks, "live_sessions": len(service.live), "batches": batcher.calls,
                "answered": batcher.answered}  # fmt: skip

    @api.post(f"/{NEXT}/{{user}}")
    async def next_track(user: int, body: Listen) -> dict:
        problem = service.check(user, body.track, body.time)
        if problem:
            raise HTTPException(400, problem)
        return {"user": user, "track": await batcher.ask(user, body.track, body.time)}

    @api.post(f"/{LAST}/{{user}}")
    async def last_track(user: int, body: Listen) -> dict:
        service.last(user, body.track, body.time)
        return {"user": user}

    return api


# ----------------------------------------------------------------------------- the command


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m platform.serve", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("env", choices=["music"], help="the simulator whose arms are served")
    p.add_argument("arm", help="an arm of platform.ab (random, toppop, sticky, sticky-fallback, i2i, greedy, "
                   "embed:PATH, policy:PATH); not oracle")  # fmt: skip
    p.add_argument("--port", type=int, default=5000, help="0: any free port (the URL is printed)")
    p.add_argument("--host", default="127.0.0.1", help="0.0.0.0 to serve other machines")
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="the population the A/B tests on (its --seed): an arm trained on it is refused",
    )
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="simulator setting the arm was built for"
    )
    p.add_argument("--log-users", type=int, default=music.LOG_USERS, help="users in the logs arms learn from")
    p.add_argument("--log-seed", type=int, default=music.LOG_SEED, help="population seed of those logs")
    return p


def bind(host: str, port: int) -> socket.socket:
    """A listening socket, or ConfigError naming the port and the fix."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        problem = f"cannot listen on {host}:{port} ({err.strerror})"
        raise ConfigError(f"{problem}; pass another --port (0: any free one)") from None
    sock.listen(2048)
    return sock


def run(argv: list[str] | None = None) -> int:
    args = parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        base = args.arm.split("#", 1)[0]
        if base in NOT_SERVABLE:
            raise ConfigError(f"{args.arm} cannot be served: {NOT_SERVABLE[base]}")
        if base.startswith("http"):
            raise ConfigError(f"{args.arm} is a service already; serve an arm of the simulator")
        cfg = ab.sim_config(args.set)
        if args.log_seed == args.seed and base in music_arms.LOGGED:
            raise ConfigError(f"--log-seed {args.log_seed} is --seed, the population the A/B tests on; pick another")
        arm = ab.build_arm(args.arm, cfg, args.log_users, args.log_seed)
        ab.check_populations({args.arm: arm}, args.seed)
        if not 0 <= args.port <= 65535:
            raise ConfigError(f"--port {args.port} is not a port (0 to 65535; 0: any free one)")
        sock = bind(args.host, args.port)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    import uvicorn

    service = Service(arm, cfg, args.seed)
    host, port = sock.getsockname()[:2]
    ready = f"serving {args.arm} at http://{host}:{port} (POST /next/<user>, /last/<user>); Ctrl-C stops"
    config = uvicorn.Config(app(service, args.arm, ready), log_level="warning", access_log=False, timeout_keep_alive=60)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C (SIGINT) is how a service stops: no traceback
        uvicorn.Server(config).run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(run())
