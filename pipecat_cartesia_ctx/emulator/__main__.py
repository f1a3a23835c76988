#
# Copyright (c) 2026, pipecat-cartesia-ctx contributors
#
# SPDX-License-Identifier: BSD 2-Clause License
#

"""``python -m pipecat_cartesia_ctx.emulator``: run the Cartesia emulator."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
