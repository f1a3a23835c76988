#
# Copyright (c) 2026, pipecat-cartesia-ctx contributors
#
# SPDX-License-Identifier: BSD 2-Clause License
#

"""Command line of the emulator.

``cartesia-emulator`` or ``python -m pipecat_cartesia_ctx.emulator``.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import signal
import sys

from loguru import logger

from .config import Behavior, CancelBehavior, Pacing
from .server import CartesiaEmulator
from .voices import VOICE_NAMES, VoiceUnavailableError


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation and tests)."""
    defaults = Pacing()
    parser = argparse.ArgumentParser(
        prog="cartesia-emulator",
        description="Local Cartesia TTS WebSocket server (contexts API) with a synthetic voice, "
        "or espeak-ng's real words (--voice espeak).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8787, help="port (default 8787; 0 = any free)")
    parser.add_argument(
        "--api-key",
        default=None,
        help="accept only this key (default: any non-empty key or token; none at all is 401)",
    )
    parser.add_argument(
        "--access-token",
        action="append",
        dest="access_tokens",
        default=[],
        metavar="TOKEN",
        help="accept this access token (repeatable; with no --api-key, only these are accepted)",
    )
    parser.add_argument(
        "--model",
        action="append",
        dest="models",
        metavar="MODEL_ID",
        help="accept only these model ids (repeatable; default: Cartesia's model ids)",
    )
    parser.add_argument(
        "--voice",
        choices=VOICE_NAMES,
        default="synthetic",
        help="synthetic: deterministic, predictable from the text (default); espeak: real words "
        "through espeak-ng, offline (pip install 'pipecat-cartesia-ctx[voice]')",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=["TRACE", "DEBUG", "INFO", "WARNING", "ERROR"],
        help="INFO: a line per connection, per context and per error; "
        "DEBUG: also every request (default INFO)",
    )
    pacing = parser.add_argument_group("pacing")
    pacing.add_argument(
        "--first-chunk-ms",
        type=float,
        default=defaults.first_chunk_ms,
        help=f"time to first chunk of each generation (default {defaults.first_chunk_ms:g})",
    )
    pacing.add_argument(
        "--speed",
        type=float,
        default=defaults.speed,
        help=f"audio seconds generated per second; 0 = unlimited (default {defaults.speed:g})",
    )
    pacing.add_argument(
        "--chunk-ms",
        type=float,
        default=defaults.chunk_ms,
        help=f"audio per chunk (default {defaults.chunk_ms:g})",
    )
    pacing.add_argument(
        "--unaligned-chunks", action="store_true", help="cut chunks off sample boundaries"
    )
    behavior = parser.add_argument_group(
        "protocol behaviour (defaults follow what Cartesia documents or was seen doing)"
    )
    behavior.add_argument(
        "--cancel",
        choices=[c.value for c in CancelBehavior],
        default=CancelBehavior.FINISH_SEGMENT.value,
        help="what is still sent of the generation under way after a cancel: the rest of it "
        "(segment, default), at most the chunk in flight (chunk), or nothing (immediate)",
    )
    behavior.add_argument(
        "--done-after-cancel",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="end a cancelled context with done (default: yes)",
    )
    behavior.add_argument(
        "--implicit-flush",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="with max_buffer_delay_ms 0, a flush_done after every input with text (default: yes)",
    )
    behavior.add_argument(
        "--flush-done-at-close",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="a flush_done for the last segment before done (default: no)",
    )
    limits = parser.add_argument_group("limits")
    limits.add_argument(
        "--max-concurrent-contexts",
        type=int,
        default=None,
        help="active contexts allowed (default unlimited)",
    )
    limits.add_argument("--max-connections", type=int, default=None, help="open sockets allowed")
    limits.add_argument(
        "--idle-timeout",
        type=float,
        default=300.0,
        help="seconds before an idle socket is closed (default 300; 0 = never)",
    )
    return parser


async def serve(args: argparse.Namespace) -> None:
    """Run an emulator configured from parsed arguments until SIGINT or SIGTERM."""
    emulator = CartesiaEmulator(
        host=args.host,
        port=args.port,
        api_key=args.api_key,
        access_tokens=args.access_tokens,
        models=args.models,
        pacing=Pacing(
            first_chunk_ms=args.first_chunk_ms,
            speed=args.speed if args.speed > 0 else math.inf,
            chunk_ms=args.chunk_ms,
            unaligned_chunks=args.unaligned_chunks,
        ),
        behavior=Behavior(
            cancel=CancelBehavior(args.cancel),
            done_after_cancel=args.done_after_cancel,
            implicit_flush=args.implicit_flush,
            flush_done_at_close=args.flush_done_at_close,
        ),
        max_concurrent_contexts=args.max_concurrent_contexts,
        max_connections=args.max_connections,
        idle_timeout=args.idle_timeout or None,
        voice=args.voice,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with emulator:
        print(f"Cartesia emulator listening on {emulator.url}", flush=True)
        print(f"  official SDK: Cartesia(websocket_base_url={emulator.base_url!r})", flush=True)
        print(f"  voice: {args.voice}", flush=True)
        print("  stop with Ctrl-C", flush=True)
        await stop.wait()
    print("Cartesia emulator stopped", flush=True)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``cartesia-emulator`` script.

    Args:
        argv: Arguments; ``sys.argv[1:]`` when None.

    Returns:
        The process exit code.
    """
    args = build_parser().parse_args(argv)
    logger.remove()
    logger.add(
        sys.stderr,
        level=args.log_level,
        format="{time:HH:mm:ss.SSS} {level: <7} {message}",
        filter="pipecat_cartesia_ctx",
    )
    try:
        asyncio.run(serve(args))
    except VoiceUnavailableError as e:
        print(f"cartesia-emulator: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"cartesia-emulator: cannot listen on {args.host}:{args.port}: {e}", file=sys.stderr)
        return 1
    return 0
