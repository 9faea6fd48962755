"""Command line: ``lambda-asgi-stream run | serve | invoke | probe`` (also ``python -m lambda_asgi_stream``).

``run MODULE:APP``     the runtime loop, inside Lambda (``bootstrap`` / exec wrapper call this)
``serve MODULE:APP``   the local emulator: the app in a child process, behind an HTTP front door
``invoke MODULE:APP``  one event through the whole streaming path on this machine, printed as it arrives
``probe URL``         measure Lambda's hold-back of small writes on a deployed function (or serve)

Heavy or local-only modules are imported inside the command that needs them, so ``run`` (the Lambda
cold path) imports nothing but the runtime loop.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import sys
from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import argparse

from ._errors import AppImportError, ConfigError, LambdaAsgiStreamError
from ._types import STREAMING_INTEGRATIONS
from ._version import __version__

logger = logging.getLogger("lambda_asgi_stream")


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    handler = _run_handler(arguments)
    if handler is not None:
        # `run` as Lambda starts it: no option parsing on the cold path (argparse costs ~2 ms to import and
        # build), and the handler is always a value, even one that looks like an option.
        return _run(handler[0])
    parser = _parser()
    args = parser.parse_args(arguments)
    if args.command is None:
        parser.print_help()
        return 2
    result: int = args.func(args)
    return result


def _run_handler(arguments: list[str]) -> tuple[str | None] | None:
    """The handler of ``run [--] [HANDLER]`` (None inside the tuple: take ``_HANDLER``); None for any other
    command line, which goes to argparse (``run --help`` among them)."""
    if not arguments or arguments[0] != "run":
        return None
    rest = arguments[1:]
    if rest[:1] == ["--"]:
        rest = rest[1:]
    elif rest[:1] and rest[0].startswith("-"):
        return None  # an option of `run` itself (--help): argparse answers
    if len(rest) > 1:
        return None
    return (rest[0] if rest else None,)


def _parser() -> argparse.ArgumentParser:
    import argparse

    # A plain path string: pathlib costs ~1 ms to import, on run's cold path if it were at module level.
    event_template = os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "emulator", "event-template.json"
    )

    parser = argparse.ArgumentParser(
        prog="lambda-asgi-stream",
        description="Stream an ASGI app from AWS Lambda.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command")

    run = sub.add_parser("run", help="serve the app from the Lambda Runtime API (inside Lambda)")
    run.add_argument("app", nargs="?", help="MODULE:APP (default: the _HANDLER variable)")
    run.set_defaults(func=_cmd_run)

    serve = sub.add_parser("serve", help="run the app locally as Lambda runs it (emulator)")
    serve.add_argument("app", help="MODULE:APP, e.g. examples.hello.app:app")
    serve.add_argument("--host", default="127.0.0.1", help="front door address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=9000, help="front door port (default 9000; 0: any)")
    serve.add_argument(
        "--integration",
        choices=["function-url", "rest", "http-api", "alb"],
        default="function-url",
        help="which event format the app receives (default function-url)",
    )
    serve.add_argument(
        "--invoke-mode",
        choices=["RESPONSE_STREAM", "BUFFERED"],
        default=None,
        help="RESPONSE_STREAM (default for function-url and rest) or BUFFERED (default for http-api, alb)",
    )
    serve.add_argument(
        "--buffering",
        choices=["lambda", "off"],
        default="lambda",
        help="lambda: hold small writes back as the service does (default); off: forward each write",
    )
    serve.add_argument(
        "--buffer-threshold", type=int, default=100 * 1024, help="hold-back threshold, bytes (default 102400)"
    )
    serve.add_argument("--timeout", type=float, default=30.0, help="function timeout, seconds (default 30)")
    serve.add_argument("--bandwidth", action="store_true", help="cap at 6 MB then 2 MB/s, as Lambda does")
    serve.add_argument("--reload", action="store_true", help="restart the sandboxes when a .py file changes")
    serve.add_argument("--concurrency", type=int, default=1, help="number of sandboxes (default 1)")
    serve.add_argument(
        "--head-timeout", type=float, default=5.0, help="seconds a client may take to send its request head"
    )
    serve.add_argument(
        "--write-timeout",
        type=float,
        default=30.0,
        help="seconds a write may wait for a client that does not read before its response is dropped",
    )
    serve.set_defaults(func=_cmd_serve)

    probe = sub.add_parser("probe", help="measure Lambda's hold-back of small writes on a deployment")
    probe.add_argument("url", help="the Function URL (or serve's address), any path the function serves")
    probe.add_argument(
        "--token", default=None, help="the probe token (default: $LAMBDA_ASGI_STREAM_PROBE_TOKEN)"
    )
    probe.add_argument("--json", action="store_true", help="print one JSON object instead of a summary")
    probe.add_argument(
        "--pause", type=float, default=1.0, help="seconds each size check waits before ending (default 1)"
    )
    probe.add_argument(
        "--time-pause", type=float, default=4.0, help="seconds the time-based check waits (default 4)"
    )
    probe.set_defaults(func=_cmd_probe)

    invoke = sub.add_parser(
        "invoke",
        help="run one request through the streaming path and print it as it arrives",
        description="Run one event through the app under the real runtime loop, in this process, and print "
        "each chunk of the response with the time it arrived. Give a request (METHOD PATH, -H, -d), or an "
        "event file with --event.",
        epilog=f"""examples:
  lambda-asgi-stream invoke examples.hello.app:app GET '/countdown?from=3'
  lambda-asgi-stream invoke main:app POST /items -H 'content-type: application/json' -d '{{"n": 1}}'
  lambda-asgi-stream invoke main:app --event event.json

event template (a Function URL event to copy and edit for --event):
  {event_template}""",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    invoke.add_argument("app", help="MODULE:APP, e.g. examples.hello.app:app")
    invoke.add_argument("method", nargs="?", help="the request's method, e.g. GET (with PATH)")
    invoke.add_argument("path", nargs="?", help="the request's path and query, e.g. '/tokens?limit=5'")
    invoke.add_argument(
        "-H", "--header", action="append", default=[], metavar="'NAME: VALUE'", help="a request header"
    )
    invoke.add_argument("-d", "--data", help="the request body; @FILE reads a file, @- stdin")
    invoke.add_argument(
        "--integration",
        choices=["function-url", "rest", "http-api", "alb"],
        default="function-url",
        help="which event format to build (default function-url)",
    )
    invoke.add_argument("--event", help="an event JSON file instead of METHOD PATH ('-' for stdin)")
    invoke.add_argument(
        "--buffered",
        action="store_true",
        help="buffered invoke mode: print the dict (the default for http-api and alb)",
    )
    invoke.add_argument("--timeout", type=float, default=30.0, help="function timeout, seconds")
    invoke.set_defaults(func=_cmd_invoke, parser=invoke)
    return parser


def _setup_logging(level: str) -> None:
    from .cycle import LineHandler

    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(LineHandler(sys.stderr))
    logging.getLogger("lambda_asgi_stream").setLevel(level)


def _handler_target(value: str | None) -> str:
    target = value or os.environ.get("_HANDLER", "")
    if target and ":" not in target and "." in target:
        # Lambda's console wants `module.attr`; uvicorn's form is `module:attr`. Accept both.
        module, _, attr = target.rpartition(".")
        target = f"{module}:{attr}"
    return target


def _cmd_run(args: argparse.Namespace) -> int:
    return _run(args.app)


def _run(target: str | None) -> int:
    import asyncio

    from .config import Config
    from .runtime import LambdaRuntime, report_init_error

    try:
        config = Config.from_env()
    except ConfigError as exc:
        _setup_logging("INFO")
        logger.error("%s", exc)
        address = os.environ.get("AWS_LAMBDA_RUNTIME_API", "")
        asyncio.run(report_init_error(address, exc))
        return 1
    _setup_logging(config.log_level)
    try:
        app = _import(target)
    except AppImportError as exc:
        # The app's own traceback (file and line of the failing import), unless the module is just missing.
        cause = exc.__cause__
        logger.error("%s", exc, exc_info=None if isinstance(cause, ModuleNotFoundError) else cause)
        asyncio.run(report_init_error(config.runtime_api, exc))
        return 1
    try:
        asyncio.run(LambdaRuntime(app, config).serve())
    except LambdaAsgiStreamError as exc:
        logger.error("runtime stopped: %s", exc)
        return 1
    return 0


def _import(target: str | None) -> Any:
    from ._importer import import_app

    resolved = _handler_target(target)
    if not resolved:
        raise AppImportError("no app given: pass MODULE:APP or set _HANDLER")
    return import_app(resolved)


#: What ``serve`` imports beyond the core, and the extra that brings it.
_SERVE_NEEDS = ("uvicorn",)
LOCAL_EXTRA_HINT = "pip install 'lambda-asgi-stream[local]' (in a checkout: pip install -e '.[local]')"


def _missing(modules: Sequence[str]) -> str | None:
    """The first of ``modules`` that cannot be imported, or None."""
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            return name
    return None


def _cmd_serve(args: argparse.Namespace) -> int:
    # Checked before anything else: the emulator imports uvicorn lazily, so without this a user who
    # installed only the core gets a ModuleNotFoundError traceback halfway through starting up.
    missing = _missing(_SERVE_NEEDS)
    if missing is not None:
        print(f"error: serve needs {missing}, from the local extra: {LOCAL_EXTRA_HINT}", file=sys.stderr)
        return 1
    import anyio

    from .emulator import EmulatorOptions, serve

    _setup_logging("INFO")
    logging.getLogger("lambda_asgi_stream.emulator").setLevel("INFO")
    streams = args.integration in STREAMING_INTEGRATIONS
    mode = args.invoke_mode or ("RESPONSE_STREAM" if streams else "BUFFERED")
    if mode == "RESPONSE_STREAM" and not streams:
        print(f"note: Lambda cannot stream through {args.integration}; emulating it anyway", file=sys.stderr)
    try:
        options = EmulatorOptions(
            app=args.app,
            host=args.host,
            port=args.port,
            integration=args.integration,
            invoke_mode=mode,
            buffering=args.buffering,
            buffer_threshold=args.buffer_threshold,
            timeout=args.timeout,
            bandwidth=args.bandwidth,
            reload=args.reload,
            concurrency=args.concurrency,
            head_timeout=args.head_timeout,
            write_timeout=args.write_timeout,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        with contextlib.suppress(KeyboardInterrupt):
            anyio.run(serve, options)
    except LambdaAsgiStreamError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _cmd_probe(args: argparse.Namespace) -> int:
    import json

    from ._errors import ProbeError
    from .probe import probe
    from .probe_protocol import ENV_PROBE_TOKEN, ThresholdSearch

    token = args.token if args.token is not None else os.environ.get(ENV_PROBE_TOKEN, "")
    try:
        search = ThresholdSearch(pause=args.pause, time_pause=args.time_pause)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    progress = None if args.json else (lambda line: print(f"  {line}", file=sys.stderr, flush=True))
    try:
        result = probe(args.url, token, search=search, progress=progress)
    except ProbeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result.as_dict()) if args.json else result.report())
    return 0 if result.threshold_bytes is not None else 1


def _cmd_invoke(args: argparse.Namespace) -> int:
    import anyio

    from .config import Config, InvokeMode
    from .emulator.invoke import invoke

    if (args.event is None) == (args.method is None or args.path is None):
        args.parser.error("give either METHOD PATH (a request to build) or --event FILE")
    if args.event is not None and (args.header or args.data is not None):
        args.parser.error("-H and -d build a request: they do not go with --event")
    try:
        config = Config.from_env({**os.environ, "AWS_LAMBDA_RUNTIME_API": "unset:0"})
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    _setup_logging(config.log_level)
    try:
        event = _invoke_event(args)
        app = _import(args.app)
    except ValueError as exc:
        args.parser.error(str(exc))
    except (AppImportError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    buffered = args.buffered or (args.event is None and args.integration not in STREAMING_INTEGRATIONS)
    mode: InvokeMode = "BUFFERED" if buffered else "RESPONSE_STREAM"

    def run_runtime(address: str) -> Awaitable[None]:
        from .runtime import LambdaRuntime

        cfg = config.replace(runtime_api=address, invoke_mode=mode, max_concurrency=1)
        return LambdaRuntime(app, cfg, handle_signals=False, blocking_waits=False).serve()

    result: int = anyio.run(invoke, run_runtime, event, args.timeout, sys.stdout)
    return result


def _invoke_event(args: argparse.Namespace) -> bytes:
    """The event to invoke with: the --event file as it is, or one built from METHOD PATH -H -d."""
    from .emulator.invoke import request_event

    if args.event is not None:
        return sys.stdin.buffer.read() if args.event == "-" else _read(args.event)
    data: str | None = args.data
    if data is None:
        body = b""
    elif data.startswith("@"):
        body = sys.stdin.buffer.read() if data == "@-" else _read(data[1:])
    else:
        body = data.encode("utf-8")
    return request_event(args.integration, args.method, args.path, args.header, body)


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


if __name__ == "__main__":
    sys.exit(main())
