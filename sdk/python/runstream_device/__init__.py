"""runstream_device - serve tools to Runstream runs from Python (asyncio).

It speaks the tool-router protocol runstream.device.v1 (docs/devices.md)
and takes its hard parts off the device author, exactly as the JavaScript
and C SDKs do: reconnecting with backoff and jitter; at-least-once delivery
(a redelivered call_id is answered from a bounded cache, never run twice);
tool.cancel and the call's deadline cancel the handler's task (the handler
sees asyncio.CancelledError); input validated against the declared JSON
Schema before the handler runs; handler errors turned into protocol errors
(ToolError for a chosen code); a shutdown that lets running calls finish;
close 4401 (token refused) and 4409 (replaced) end the device with a
DeviceError instead of reconnecting.

Built on Debian's python3-websockets (10.x, asyncio) and python3-jsonschema.

    device = Device(url, "py-1", token)

    @device.tool("add", description="a+b", input_schema={...})
    async def add(args, ctx):
        return {"sum": args["a"] + args["b"]}

    asyncio.run(device.run())
"""

import asyncio
import collections
import datetime
import json
import logging
import random
import re

import jsonschema
import websockets
import websockets.exceptions

__all__ = ["Device", "DeviceError", "ToolError", "CallContext", "SUBPROTOCOL"]

SUBPROTOCOL = "runstream.device.v1"
_DEVICE_ID = re.compile(r"^[a-z0-9_-]{1,64}$")
_MAX_TOOLS = 256
_MAX_TOOL_NAME = 128
_MAX_CALL_ID = 128
_MAX_MESSAGE = 4096
_FATAL = {4401: "unauthorized", 4409: "replaced"}

log = logging.getLogger("runstream_device")


class ToolError(Exception):
    """Raise from a handler to fail the call with a code the run can act on.
    retryable=True lets the orchestrator retry the step."""

    def __init__(self, code, message, retryable=False):
        super().__init__(message)
        self.code = str(code or "tool_error")
        self.message = str(message)
        self.retryable = bool(retryable)


class DeviceError(Exception):
    """The device stopped for good: the router refused its token (close 4401,
    code "unauthorized") or another connection of the same device replaced
    it (close 4409, code "replaced"). Reconnecting would not help."""

    def __init__(self, code, message, close_code):
        super().__init__(message)
        self.code = code
        self.close_code = close_code


class CallContext:
    """What a handler knows about its call. Read-only by convention."""

    __slots__ = ("call_id", "run_id", "step_id", "tool", "attempt", "deadline")

    def __init__(self, call_id, run_id, step_id, tool, attempt, deadline):
        self.call_id = call_id
        self.run_id = run_id
        self.step_id = step_id
        self.tool = tool
        self.attempt = attempt
        self.deadline = deadline  # timezone-aware datetime, or None


def _clip(s):
    s = str(s)
    return s if len(s) <= _MAX_MESSAGE else s[: _MAX_MESSAGE - 3] + "..."


def _parse_deadline(s):
    if not isinstance(s, str):
        return None
    try:
        return datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        return None


class _Tool:
    __slots__ = ("name", "description", "input_schema", "validator", "fn")


class _Entry:
    """One call id in the de-duplication cache."""

    __slots__ = ("state", "frame", "task", "why")

    def __init__(self):
        self.state = "running"  # running | done | cancelled
        self.frame = None       # the tool.result frame, once done
        self.task = None        # the handler's task, while running
        self.why = None         # "cancel" | "deadline" | "shutdown" once cancelled by us


class Device:
    def __init__(self, url, device_id, token, *, backoff_min=0.1, backoff_max=10.0,
                 cache_size=512, max_result_bytes=1 << 20, max_frame_bytes=16 << 20,
                 heartbeat=15.0):
        if not isinstance(url, str) or not re.match(r"^wss?://", url):
            raise ValueError("Device: url must be ws:// or wss://")
        if not isinstance(device_id, str) or not _DEVICE_ID.match(device_id):
            raise ValueError("Device: device_id must match [a-z0-9_-]{1,64}")
        if not isinstance(token, str) or not 0 < len(token) <= 256:
            raise ValueError("Device: token must be a non-empty string (max 256)")
        self.url, self.device_id, self.token = url, device_id, token
        self.backoff_min, self.backoff_max = backoff_min, backoff_max
        self.cache_size = cache_size
        self.max_result_bytes = max_result_bytes
        self.max_frame_bytes = max_frame_bytes
        self.heartbeat = heartbeat
        self.stats = {"executions": 0, "cache_hits": 0, "cancels": 0, "invalid_args": 0,
                      "reconnects": 0}
        self._tools = {}
        self._cache = collections.OrderedDict()  # call_id -> _Entry, oldest first
        self._inflight = set()                   # serving tasks
        self._ws = None
        self._welcomed = False
        self._started = False
        self._stopping = False
        self._wake = None                        # set by close(): ends a backoff sleep
        self._router_error = None
        self.ready = None                        # a Future: the welcome frame (set in run())

    # ---- registration ---------------------------------------------------

    def tool(self, name, *, description="", input_schema=None):
        """Decorator registering an async handler `fn(args, ctx)` as a tool.
        Register before run(): tools are announced in the hello."""
        if self._started:
            raise RuntimeError(f"tool {name}: register tools before run()")
        if (not isinstance(name, str) or not 0 < len(name) <= _MAX_TOOL_NAME
                or any(c.isspace() or ord(c) < 0x21 or ord(c) == 0x7F for c in name)):
            raise ValueError(f"tool: name must be a non-empty string without whitespace "
                             f"(max {_MAX_TOOL_NAME})")
        if name in self._tools:
            raise ValueError(f"tool {name}: registered twice")
        if len(self._tools) >= _MAX_TOOLS:
            raise ValueError(f"tool {name}: at most {_MAX_TOOLS} tools")
        validator = None
        if input_schema is not None:
            if not isinstance(input_schema, dict):
                raise ValueError(f"tool {name}: input_schema must be a dict")
            cls = jsonschema.validators.validator_for(input_schema,
                                                      default=jsonschema.Draft202012Validator)
            cls.check_schema(input_schema)
            validator = cls(input_schema)

        def register(fn):
            if not asyncio.iscoroutinefunction(fn):
                raise TypeError(f"tool {name}: the handler must be an async def")
            t = _Tool()
            t.name, t.description, t.input_schema = name, str(description), input_schema
            t.validator, t.fn = validator, fn
            self._tools[name] = t
            return fn

        return register

    # ---- life cycle -----------------------------------------------------

    async def run(self):
        """Connect and serve until close() (returns) or until the router ends
        the device for good (raises DeviceError)."""
        self._started = True
        loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        if self.ready is None:
            self.ready = loop.create_future()
        backoff = self.backoff_min
        while not self._stopping:
            close_code = None
            try:
                ws = await websockets.connect(
                    self.url, subprotocols=[SUBPROTOCOL], compression=None,
                    ping_interval=self.heartbeat, ping_timeout=self.heartbeat * 2,
                    max_size=self.max_frame_bytes, open_timeout=10)
            except (OSError, asyncio.TimeoutError, websockets.exceptions.WebSocketException) as e:
                log.info("cannot connect to %s: %s", self.url, e)
                ws = None
            if ws is not None:
                self._ws, self._welcomed, self._router_error = ws, False, None
                try:
                    await ws.send(json.dumps(self._hello()))
                    async for raw in ws:
                        if self._on_frame(raw):
                            backoff = self.backoff_min
                except websockets.exceptions.ConnectionClosed:
                    pass
                finally:
                    self._ws, self._welcomed = None, False
                    close_code = ws.close_code
                fatal = _FATAL.get(close_code)
                if fatal is None and self._router_error in ("unauthorized", "replaced"):
                    fatal = self._router_error
                if fatal is not None:
                    self._stop_for_good(fatal, close_code)
            if self._stopping:
                break
            # Equal jitter: half fixed, half random, so a fleet does not
            # reconnect in lockstep.
            delay = backoff / 2 + random.random() * backoff / 2
            backoff = min(backoff * 2, self.backoff_max)
            self.stats["reconnects"] += 1
            log.info("disconnected (%s); reconnecting in %d ms", close_code, delay * 1000)
            try:
                await asyncio.wait_for(self._wake.wait(), delay)
            except asyncio.TimeoutError:
                pass
        if self._inflight:
            await asyncio.gather(*self._inflight, return_exceptions=True)

    def _stop_for_good(self, fatal, close_code):
        why = ("the router refused the token (close 4401): issue a new one with "
               "`runctl devices token`" if fatal == "unauthorized" else
               "another connection of this device replaced this one (close 4409)")
        log.error("device %s: %s; not reconnecting", self.device_id, why)
        self._stopping = True
        for e in self._cache.values():
            if e.state == "running" and e.task is not None:
                e.why = "shutdown"
                e.task.cancel()
        err = DeviceError(fatal, why, close_code)
        if self.ready is not None and not self.ready.done():
            self.ready.set_exception(err)
            self.ready.exception()  # observed: run() raises it too
        raise err

    async def close(self, timeout=30.0):
        """Take no new calls, let running ones finish (cancelling them after
        `timeout` seconds) and send their results, then close the connection."""
        self._stopping = True
        if self._wake is not None:
            self._wake.set()
        if self._inflight:
            _, pending = await asyncio.wait(set(self._inflight), timeout=timeout)
            for e in self._cache.values():
                if e.state == "running" and e.task is not None:
                    e.why = "shutdown"
                    e.task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
        ws = self._ws
        if ws is not None:
            await ws.close(1000, "device closing")

    # ---- frames ---------------------------------------------------------

    def _hello(self):
        tools = []
        for t in self._tools.values():
            d = {"name": t.name, "description": t.description}
            if t.input_schema is not None:
                d["input_schema"] = t.input_schema
            tools.append(d)
        return {"type": "hello", "device_id": self.device_id, "token": self.token, "tools": tools}

    def _on_frame(self, raw):
        """Handle one frame; True when it was a welcome."""
        try:
            f = json.loads(raw)
        except ValueError as e:
            log.warning("unparseable frame from the router: %s", e)
            return False
        if not isinstance(f, dict):
            return False
        t = f.get("type")
        if t == "welcome":
            self._welcomed = True
            log.info("welcome: device %s of tenant %s", f.get("device_id"), f.get("tenant"))
            if self.ready is not None and not self.ready.done():
                self.ready.set_result(f)
            return True
        if t == "tool.call":
            self._on_call(f)
        elif t == "tool.cancel":
            e = self._cache.get(f.get("call_id")) if isinstance(f.get("call_id"), str) else None
            if e is not None and e.state == "running":
                e.state, e.why = "cancelled", "cancel"
                self.stats["cancels"] += 1
                log.info("cancelled by the router: %s", f["call_id"])
                if e.task is not None:
                    e.task.cancel()
        elif t == "error":
            self._router_error = str(f.get("code"))
            log.warning("router error %s: %s", f.get("code"), f.get("message"))
        return False

    def _remember(self, call_id, entry):
        self._cache[call_id] = entry
        # Bounded: the oldest go first. An evicted running call still
        # finishes and answers; only its de-duplication is forgotten.
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    def _send(self, frame):
        ws = self._ws
        if ws is None or not self._welcomed:
            return  # offline: the cached frame answers the redelivery
        task = asyncio.ensure_future(ws.send(frame))
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    def _result(self, call_id, output=None, error=None):
        if error is not None:
            code, message, retryable = error
            return json.dumps({"type": "tool.result", "call_id": call_id,
                               "error": {"code": _clip(code)[:64] or "tool_error",
                                         "message": _clip(message),
                                         "retryable": bool(retryable)}})
        try:
            s = json.dumps({"type": "tool.result", "call_id": call_id, "output": output},
                           allow_nan=False)
        except (TypeError, ValueError) as e:
            return self._result(call_id, error=("invalid_output", f"output is not JSON: {e}", False))
        if len(s.encode()) > self.max_result_bytes:
            return self._result(call_id, error=(
                "result_too_large",
                f"the output is {len(s.encode())} bytes, over {self.max_result_bytes}", False))
        return s

    def _on_call(self, f):
        call_id, name = f.get("call_id"), f.get("tool")
        if (not isinstance(call_id, str) or not 0 < len(call_id) <= _MAX_CALL_ID
                or not isinstance(name, str)):
            log.warning("tool.call without a valid call_id or tool: ignored")
            return
        seen = self._cache.get(call_id)
        if seen is not None:
            if seen.state == "done":
                self.stats["cache_hits"] += 1
                log.info("answered from cache: %s", call_id)
                self._send(seen.frame)
            else:
                log.info("redelivered while %s: %s", seen.state, call_id)
            return
        if self._stopping:
            return  # the router hands it out again after we leave
        entry = _Entry()
        self._remember(call_id, entry)
        tool = self._tools.get(name)
        if tool is None:
            self._settle(entry, self._result(call_id, error=(
                "unknown_tool", f'this device has no tool "{name}"', False)))
            return
        args = f.get("args", {})
        if tool.validator is not None:
            errors = sorted(tool.validator.iter_errors(args), key=lambda e: list(e.absolute_path))
            if errors:
                self.stats["invalid_args"] += 1
                msg = "; ".join("/" + "/".join(str(p) for p in e.absolute_path) + ": " + e.message
                                for e in errors[:5])
                self._settle(entry, self._result(call_id, error=("invalid_args", msg, False)))
                return
        attempt = f.get("attempt")
        ctx = CallContext(call_id, f.get("run_id"), f.get("step_id"), name,
                          attempt if isinstance(attempt, int) else 1,
                          _parse_deadline(f.get("deadline")))
        self.stats["executions"] += 1
        serve = asyncio.ensure_future(self._serve(entry, tool, args, ctx))
        self._inflight.add(serve)
        serve.add_done_callback(self._inflight.discard)

    def _settle(self, entry, frame):
        entry.task = None
        if entry.state == "cancelled":
            return  # nobody wants it: the router ignores results after a cancel
        entry.state, entry.frame = "done", frame
        self._send(frame)

    async def _serve(self, entry, tool, args, ctx):
        loop = asyncio.get_running_loop()
        task = loop.create_task(tool.fn(args, ctx))
        entry.task = task
        timer = None
        if ctx.deadline is not None:
            delay = (ctx.deadline - datetime.datetime.now(datetime.timezone.utc)).total_seconds()

            def expire():
                if entry.state == "running" and entry.why is None:
                    entry.why = "deadline"
                    task.cancel()

            timer = loop.call_later(max(0.0, delay), expire)
        try:
            try:
                output = await asyncio.shield(task)
                frame = self._result(ctx.call_id, output=output)
            except asyncio.CancelledError:
                if not task.done():
                    # We (the serving task) were cancelled, not the handler.
                    task.cancel()
                    raise
                if not task.cancelled():
                    # The handler raised CancelledError itself; treat as ours.
                    pass
                if entry.why == "deadline":
                    frame = self._result(ctx.call_id, error=(
                        "deadline_exceeded", "the call passed its deadline", True))
                else:
                    frame = self._result(ctx.call_id, error=("cancelled", entry.why or "cancelled", False))
            except ToolError as e:
                frame = self._result(ctx.call_id, error=(e.code, e.message, e.retryable))
            except Exception as e:  # noqa: BLE001 - any handler failure becomes a tool error
                log.warning("tool %s (%s) raised: %r", tool.name, ctx.call_id, e)
                frame = self._result(ctx.call_id, error=("tool_error", str(e) or type(e).__name__, False))
            self._settle(entry, frame)
        finally:
            if timer is not None:
                timer.cancel()
