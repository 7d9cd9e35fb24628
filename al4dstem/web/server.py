"""The labelling page's web server: a small starlette app served by uvicorn in a daemon thread.

Security, because the page can write to the label file: every request needs the session's
random token (in the page's URL, then sent by the page as a header); requests from another
origin, or with a Host header that is not this server (DNS rebinding), are refused with 403;
bodies are small JSON, checked field by field, and nothing malformed reaches the label file.
"""

from __future__ import annotations

import asyncio
import html
import ipaddress
import json
import secrets
import socket
import threading
import time
from collections import OrderedDict
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from importlib import resources
from urllib.parse import parse_qs

import numpy as np

from al4dstem.errors import Al4dstemError
from al4dstem.web.oracle import BrowserOracle, Posted, parse_label
from al4dstem.web.views import PredictionCache, Survey, enhanced_pattern, guess, shrink

TOKEN_HEADER = "x-al4dstem-token"
MAX_BODY = 4096  # bytes: an answer is a few dozen
ANSWER_WAIT = 120.0  # seconds a request waits for the loop (it may be choosing the next round)
LONG_POLL = 20.0  # seconds a state request with ?since= waits for news
POLL_STEP = 0.02
STATIC_FILES = {"app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8"}
THUMB_MAX = 256
ENHANCED_CACHE = 64  # enhanced patterns kept (the gallery's, the queue's)
WARM_AHEAD = 3  # queued positions prepared in advance
SHUTDOWN_GRACE = 10  # seconds uvicorn waits, when stopping, for replies being sent (a quit's above all)
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"content-security-policy",
     b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
     b"frame-ancestors 'none'; base-uri 'none'; form-action 'none'"),
]


class LabelServer:
    """Serves the labelling page of ``session`` on ``host``:``port`` (0: a free port).

    ``start()`` returns the URL to open (it carries the access token), ``oracle()`` the
    ``BrowserOracle`` to drive the session with, ``stop()`` ends serving. ``warning`` is a
    sentence to show the person when ``host`` is reachable from other machines, else None.
    """

    def __init__(self, session, host: str = "127.0.0.1", port: int = 0, token: str | None = None):
        self.session = session
        self.host = host
        self.port = port
        self.token = token
        self.url: str | None = None
        self.warning = None if _is_loopback(host) else (
            f"serving on {host}: any machine that can reach it and knows the URL (with its token) can label; "
            "on a shared network prefer --host 127.0.0.1 and an ssh tunnel (ssh -L)")
        self._oracle = BrowserOracle(self)
        self._server = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self.survey = Survey(session)
        self.predictions = PredictionCache(session)
        # enhanced patterns, computed once each (the page and the warm-up share them)
        self._enhanced: OrderedDict[tuple[int, int], Future] = OrderedDict()
        self._enhanced_lock = threading.Lock()
        self._workers = ThreadPoolExecutor(max_workers=2, thread_name_prefix="al4dstem-pattern")

    def oracle(self) -> BrowserOracle:
        return self._oracle

    # ------------------------------------------------------------ serving

    def start(self) -> str:
        """Bind, serve in a daemon thread, and return the page's URL (with the token)."""
        try:
            import starlette  # noqa: F401
            import uvicorn
        except ImportError:
            raise Al4dstemError("the browser labeller needs starlette and uvicorn: pip install 'al4dstem[web]' "
                                "(or use --ui terminal)") from None
        if self._thread is not None:
            return self.url
        if not isinstance(self.port, int) or isinstance(self.port, bool) or not 0 <= self.port <= 65535:
            raise Al4dstemError(f"--port must be 0..65535 (0: any free port), got {self.port!r}")
        self.token = self.token or secrets.token_urlsafe(24)
        sock = _bind(self.host, self.port)
        port = sock.getsockname()[1]
        self.port = port
        self._allowed_hosts = _allowed_hosts(self.host, port)
        if self.host in ("0.0.0.0", "::"):
            name = socket.gethostname().lower()  # all interfaces: the machine's name reaches it
        else:
            name = f"[{self.host.strip('[]')}]" if ":" in self.host else self.host
        self.url = f"http://{name}:{port}/?token={self.token}"
        config = uvicorn.Config(self.app(), log_level="warning", access_log=False, lifespan="off",
                                log_config=None, timeout_graceful_shutdown=SHUTDOWN_GRACE,
                                limit_concurrency=64)
        self._server = uvicorn.Server(config)
        # Server.run skips its signal handlers outside the main thread: signals stay the labeller's.
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]},
                                        name="al4dstem-web", daemon=True)
        self._thread.start()
        end = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > end:
                sock.close()
                raise Al4dstemError(f"the labelling page could not be served on {self.host}:{port}")
            time.sleep(0.01)
        self.survey.start()
        return self.url

    def stop(self) -> None:
        """Stop serving; requests still waiting get 'labelling has finished', replies already
        decided (a quit's 200) are still sent. Safe to call twice, and from any thread."""
        # Under the lock that guards submissions: once the workers are shut down, no request
        # can find them open (a submission then would raise, and its reply be a 500).
        with self._enhanced_lock:
            self._stopping.set()
            self._workers.shutdown(wait=False, cancel_futures=True)
        self._oracle.close()
        self.predictions.stop()
        if self._server is not None:
            self._server.should_exit = True  # uvicorn lets replies in flight finish (SHUTDOWN_GRACE)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=SHUTDOWN_GRACE + 5)

    # ------------------------------------------------------------ the app

    def app(self):
        from starlette.applications import Starlette
        from starlette.routing import Route

        routes = [
            Route("/", self._page, methods=["GET"]),
            Route("/static/{name}", self._static, methods=["GET"]),
            Route("/api/info", self._info, methods=["GET"]),
            Route("/api/state", self._state, methods=["GET"]),
            Route("/api/pattern", self._pattern, methods=["GET"]),
            Route("/api/survey", self._survey, methods=["GET"]),
            Route("/api/prediction", self._prediction, methods=["GET"]),
            Route("/api/guess", self._guess, methods=["GET"]),
            Route("/api/answer", self._answer, methods=["POST"]),
            Route("/api/undo", self._undo, methods=["POST"]),
            Route("/api/quit", self._quit, methods=["POST"]),
        ]
        return _Guard(Starlette(routes=routes), self)

    async def _page(self, request):
        from starlette.responses import HTMLResponse

        text = _static_text("index.html").replace("__TOKEN__", html.escape(self.token, quote=True))
        return HTMLResponse(text, headers={"cache-control": "no-store"})

    async def _static(self, request):
        from starlette.responses import Response

        name = request.path_params["name"]
        if name not in STATIC_FILES:
            return _error(404, "no such file")
        return Response(_static_text(name), media_type=STATIC_FILES[name], headers={"cache-control": "no-store"})

    async def _info(self, request):
        from starlette.concurrency import run_in_threadpool

        from al4dstem.colors import CURRENT_HEX, SKIPPED_RGB, class_hex, to_hex
        from al4dstem.display import COLORMAP

        ds = self.session.dataset
        state = await run_in_threadpool(self.session.state)
        return _json({
            "classes": list(_class_names()), "colors": list(class_hex()), "current_color": CURRENT_HEX,
            "skip_color": to_hex(SKIPPED_RGB), "scan_shape": list(self.session.scan_shape),
            "detector_shape": [int(n) for n in ds.detector_shape], "source": str(getattr(ds, "source", "")),
            "budget": self.session.budget, "colormap": COLORMAP.tolist(), "state": state,
        })

    async def _state(self, request):
        from starlette.concurrency import run_in_threadpool

        since = request.query_params.get("since")
        if since is not None:
            since = _int_param(since, "since")
            if isinstance(since, _Bad):
                return since.response()
            end = time.monotonic() + LONG_POLL
            while self.session.version == since and time.monotonic() < end and not self._stopping.is_set():
                await asyncio.sleep(POLL_STEP)
        return _json(await run_in_threadpool(self.session.state))

    async def _pattern(self, request):
        from starlette.concurrency import run_in_threadpool
        from starlette.responses import Response

        position = self._position(request.query_params)
        if isinstance(position, _Bad):
            return position.response()
        kind = request.query_params.get("kind", "enhanced")
        if kind not in ("enhanced", "raw"):
            return _error(422, "kind must be enhanced or raw")
        size = request.query_params.get("size")
        if size is not None:
            size = _int_param(size, "size")
            if isinstance(size, _Bad):
                return size.response()
            if not 8 <= size <= THUMB_MAX:
                return _error(422, f"size must be 8..{THUMB_MAX}")
        image = await run_in_threadpool(self._pattern_image, position, kind, size)
        if image is None:
            return _error(409, "labelling has finished")
        rows, cols = image.shape
        return Response(np.ascontiguousarray(image, dtype="<f4").tobytes(), media_type="application/octet-stream",
                        headers={"x-shape": f"{rows},{cols}", "cache-control": "private, max-age=86400"})

    def _pattern_image(self, position, kind: str, size: int | None) -> np.ndarray | None:
        """The pattern for the page, or None once the server stops (no workers left to make it)."""
        if kind == "raw":
            image = np.nan_to_num(np.asarray(self.session.pattern(position), dtype=np.float32), posinf=0, neginf=0)
        else:
            found = self._enhanced_future(position)
            if found is None:
                return None
            try:
                image = found.result()
            except CancelledError:  # queued when the server stopped
                return None
        return image if size is None else shrink(image, size).astype(np.float32)

    def _enhanced_future(self, position) -> Future | None:
        """The enhanced pattern at ``position``, made once by the workers; None once stopping."""
        with self._enhanced_lock:
            if self._stopping.is_set():
                return None
            found = self._enhanced.get(position)
            if found is None or found.cancelled() or (found.done() and found.exception() is not None):
                found = self._enhanced[position] = self._workers.submit(self._enhance, position)
            self._enhanced.move_to_end(position)
            while len(self._enhanced) > ENHANCED_CACHE:
                self._enhanced.popitem(last=False)
            return found

    def _enhance(self, position) -> np.ndarray:
        raw = self.session.pattern(position)
        # The disk radius comes from the mean pattern. Stop waiting when the server stops: the
        # interpreter joins these workers before it exits.
        end = time.monotonic() + 60
        while not self.survey.ready.wait(timeout=0.1) and time.monotonic() < end and not self._stopping.is_set():
            pass
        overlay = self.survey.overlay or {"disk_radius": max(1.0, min(raw.shape) / 64)}
        return enhanced_pattern(raw, overlay["disk_radius"])

    def _warm(self, state: dict) -> None:
        """Prepare the next patterns the page will ask for (a new round's first one above all).
        Nothing to prepare once labelling has stopped; and a stop racing this is harmless
        (``_enhanced_future`` then declines), so a saved answer's reply never turns into a 500."""
        if state.get("stopped") is not None:
            return
        for x, y in (state.get("queue") or [])[:WARM_AHEAD]:
            if self._enhanced_future((int(x), int(y))) is None:
                return

    async def _survey(self, request):
        from starlette.concurrency import run_in_threadpool

        if request.query_params.get("wait") == "1":
            await run_in_threadpool(self.survey.ready.wait, 60)
        survey = self.survey
        if not survey.ready.is_set():
            return _json({"ready": False})
        overlay = dict(survey.overlay or {})
        overlay.pop("lattice", None)
        return _json({"ready": True, "error": survey.error, "overlay": overlay,
                      "maps": {name: _rounded(m) for name, m in survey.maps.items()}})

    async def _prediction(self, request):
        from starlette.concurrency import run_in_threadpool

        found = await run_in_threadpool(self.predictions.get)
        probs = found.pop("probs")
        if probs is not None:
            found["probs"] = _rounded(probs.reshape(-1, probs.shape[-1]))
        return _json(found)

    async def _guess(self, request):
        from starlette.concurrency import run_in_threadpool

        position = self._position(request.query_params)
        if isinstance(position, _Bad):
            return position.response()
        return _json({"probs": await run_in_threadpool(guess, self.session, position)})

    async def _answer(self, request):
        body = await _read_json(request)
        if isinstance(body, _Bad):
            return body.response()
        missing = [k for k in ("x", "y", "label") if k not in body]
        if missing:
            return _error(422, f"missing field {missing[0]!r}")
        position = self._position(body, from_json=True)
        if isinstance(position, _Bad):
            return position.response()
        try:
            label = parse_label(body["label"])
        except Al4dstemError as e:
            return _error(422, str(e))
        return await self._post(Posted("answer", *position, label))

    async def _undo(self, request):
        body = await _read_json(request)
        if isinstance(body, _Bad):
            return body.response()
        return await self._post(Posted("undo"))

    async def _quit(self, request):
        body = await _read_json(request)
        if isinstance(body, _Bad):
            return body.response()
        return await self._post(Posted("quit"))

    async def _post(self, posted: Posted):
        if self.session.stopped is not None or self._stopping.is_set():
            return _error(409, "labelling has finished")
        future = self._oracle.post(posted)
        waiting = asyncio.wrap_future(future)
        try:
            status, payload = await asyncio.wait_for(asyncio.shield(waiting), ANSWER_WAIT)
        except asyncio.TimeoutError:
            if future.cancel():  # the loop never took it: nothing was saved
                return _error(503, "the labeller is busy (choosing or training); nothing was saved, try again")
            status, payload = await waiting  # taken: its outcome (saved or not) always comes
        if status == 200:
            self._warm(payload)
        return _json(payload, status)

    def _host_allowed(self, host: str) -> bool:
        """The Host header names this server: its own address (or, bound to all interfaces, any
        IP address of it) and port. A DNS name an attacker controls (rebinding) never matches."""
        if host in self._allowed_hosts:
            return True
        if self.host not in ("0.0.0.0", "::"):
            return False
        name, _, port = host.rpartition(":")
        try:
            ipaddress.ip_address(name.strip("[]"))
        except ValueError:
            return False
        return port == str(self.port)

    def _position(self, params, from_json: bool = False) -> tuple[int, int] | _Bad:
        """``(x, y)`` from query parameters or a JSON body (JSON numbers only): integers inside the scan."""
        values = []
        for name in ("x", "y"):
            value = params.get(name)
            if value is None:
                return _Bad(422, f"missing {name}")
            if from_json and not isinstance(value, int):
                return _Bad(422, f"{name} must be an integer, got {str(value)[:20]!r}")
            value = _int_param(value, name)
            if isinstance(value, _Bad):
                return value
            values.append(value)
        rows, cols = self.session.scan_shape
        x, y = values
        if not (0 <= x < cols and 0 <= y < rows):
            return _Bad(422, f"position x={x}, y={y} is outside the {cols} x {rows} scan (cols x rows)")
        return x, y


# ---------------------------------------------------------------- the guard in front of every route


class _Guard:
    """ASGI wrapper: Host and Origin checks, the token, body size, security headers."""

    def __init__(self, app, server: LabelServer):
        self.app, self.server = app, server

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
            return
        refusal = self._refusal(scope)
        if refusal is not None:
            await refusal(scope, receive, send)
            return

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *SECURITY_HEADERS]}
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _refusal(self, scope):
        headers = {}
        for key, value in scope.get("headers", []):
            headers.setdefault(key.decode("latin-1").lower(), value.decode("latin-1"))
        host = headers.get("host", "").lower()
        if not self.server._host_allowed(host):
            return _error(403, "forbidden: unexpected Host header")
        origin = headers.get("origin")
        if origin is not None and origin.lower() != f"http://{host}":
            return _error(403, "forbidden: cross-origin request")
        path = scope.get("path", "")
        # Opening the page from a link elsewhere (a notebook's) is fine: the URL's token is the key.
        # Everything else comes from the page itself.
        opening = path == "/" and scope.get("method") == "GET" and headers.get("sec-fetch-mode") == "navigate"
        if not opening and headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
            return _error(403, "forbidden: cross-site request")
        if path.startswith("/api/"):
            given = headers.get(TOKEN_HEADER, "")
        else:
            given = (parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token") or [""])[0]
        if not secrets.compare_digest(given.encode("utf-8", "replace"), self.server.token.encode()):
            return _error(403, "forbidden: missing or wrong token (open the URL the labeller printed)")
        length = headers.get("content-length")
        if length is not None and not length.isdigit():
            return _error(400, "bad Content-Length")
        if length is not None and int(length) > MAX_BODY:
            return _error(413, f"request body over {MAX_BODY} bytes")
        return None


# ---------------------------------------------------------------- helpers


class _Bad:
    """A refused request: status and message, turned into a response by the caller."""

    def __init__(self, status: int, message: str):
        self.status, self.message = status, message

    def response(self):
        return _error(self.status, self.message)


def _json(payload, status: int = 200):
    from starlette.responses import Response

    body = json.dumps(payload, separators=(",", ":"), allow_nan=False).encode()
    return Response(body, status_code=status, media_type="application/json", headers={"cache-control": "no-store"})


def _error(status: int, message: str):
    return _json({"error": message}, status)


def _int_param(value, name: str) -> int | _Bad:
    """An integer from a query string or JSON value; floats, booleans and text are refused."""
    if isinstance(value, bool):
        return _Bad(422, f"{name} must be an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit() and len(value) < 12:
        return int(value)
    return _Bad(422, f"{name} must be an integer, got {str(value)[:20]!r}")


async def _read_json(request) -> dict | _Bad:
    """The request's JSON object, at most ``MAX_BODY`` bytes (also without a Content-Length)."""
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        return _Bad(415, "send JSON (Content-Type: application/json)")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            return _Bad(413, f"request body over {MAX_BODY} bytes")
    try:
        data = json.loads(body.decode("utf-8")) if body.strip() else {}
    except (UnicodeDecodeError, ValueError):
        return _Bad(400, "the body is not valid JSON")
    if not isinstance(data, dict):
        return _Bad(422, "the body must be a JSON object")
    return data


def _rounded(values: np.ndarray) -> list:
    """A float array as JSON-ready nested lists (about 5 significant digits of its largest value;
    NaN as null)."""
    arr = np.asarray(values, dtype=np.float64)
    scale = np.nanmax(np.abs(arr[np.isfinite(arr)]), initial=0.0)
    digits = 4 - int(np.floor(np.log10(scale))) if scale > 0 else 4
    out = np.round(arr, max(0, digits)).astype(object)
    out[~np.isfinite(arr)] = None
    return out.tolist()


def _class_names():
    from al4dstem.labels import CLASSES

    return CLASSES


def _static_text(name: str) -> str:
    return resources.files("al4dstem.web").joinpath("static", name).read_text(encoding="utf-8")


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host``:``port``; errors are one line naming the address."""
    try:
        infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise Al4dstemError(f"--host {host}: not an address of this machine ({e.strerror})") from None
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(64)
    except OSError as e:
        sock.close()
        hint = ": choose another --port, or --port 0 for any free one" if e.errno == 98 else ""
        raise Al4dstemError(f"cannot serve on {host}:{port} ({e.strerror or e}){hint}") from None
    sock.setblocking(False)
    return sock


def _allowed_hosts(host: str, port: int) -> set[str]:
    """Host header values this server answers to: its own address and, for loopback or
    all-interfaces binds, the local names. DNS names an attacker controls never match."""
    names = {host.lower(), "localhost", "127.0.0.1", "[::1]"}
    if ":" in host:
        names.add(f"[{host.strip('[]').lower()}]")
    if host in ("0.0.0.0", "::"):
        names |= {socket.gethostname().lower(), socket.getfqdn().lower()}
    return {f"{n}:{port}" for n in names} | (names if port == 80 else set())
