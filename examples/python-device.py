#!/usr/bin/python3
"""python-device.py - an example device in Python on the Python SDK
(sdk/python), with the same tools as the C example (device/example.c):
  echo      returns its args unchanged
  sleep_ms  waits args.ms milliseconds; tool.cancel or the deadline cancel it
  fail      fails with args.code / args.message / args.retryable
Environment: RS_ROUTER_URL (ws://127.0.0.1:8081/v1/devices/connect),
RS_DEVICE_ID, RS_DEVICE_TOKEN. SIGTERM/SIGINT: running calls finish and are
answered, then it exits 0. Exit 3: token refused (4401); 4: replaced by
another connection of the same device (4409).
It prints "start|end|cancelled <tool> <call_id>" per handler run (the SDK
conformance test counts them).
Run: PYTHONPATH=sdk/python /usr/bin/python3 examples/python-device.py
"""
import asyncio
import logging
import os
import signal
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "sdk", "python"))
from runstream_device import Device, DeviceError, ToolError  # noqa: E402


def say(line):
    print(line, file=sys.stderr, flush=True)


async def main():
    url = os.environ.get("RS_ROUTER_URL", "ws://127.0.0.1:8081/v1/devices/connect")
    device_id, token = os.environ.get("RS_DEVICE_ID"), os.environ.get("RS_DEVICE_TOKEN")
    if not device_id or not token:
        say("python-device: set RS_DEVICE_ID and RS_DEVICE_TOKEN")
        return 2
    device = Device(url, device_id, token)

    @device.tool("echo", description="Returns its arguments unchanged",
                 input_schema={"type": "object"})
    async def echo(args, ctx):
        say(f"start echo {ctx.call_id}")
        return args

    @device.tool("sleep_ms", description="Sleeps args.ms milliseconds",
                 input_schema={"type": "object", "required": ["ms"],
                               "properties": {"ms": {"type": "integer", "minimum": 0}}})
    async def sleep_ms(args, ctx):
        say(f"start sleep_ms {ctx.call_id}")
        try:
            await asyncio.sleep(args["ms"] / 1000)
        except asyncio.CancelledError:
            say(f"cancelled sleep_ms {ctx.call_id}")
            raise
        say(f"end sleep_ms {ctx.call_id}")
        return {"slept_ms": args["ms"]}

    @device.tool("fail", description="Always fails with args.code/message/retryable",
                 input_schema={"type": "object"})
    async def fail(args, ctx):
        raise ToolError(args.get("code", "tool_error"),
                        args.get("message", "the fail tool always fails"),
                        retryable=args.get("retryable") is True)

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: asyncio.ensure_future(device.close()))
    try:
        await device.run()
    except DeviceError as e:
        say(f"python-device: {e}")
        return 3 if e.code == "unauthorized" else 4
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    sys.exit(asyncio.run(main()))
