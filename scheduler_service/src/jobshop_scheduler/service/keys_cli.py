"""`schedctl keygen`: a new API key on stdout, only its hash in the keys file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from jobshop_scheduler.command_error import CliError
from jobshop_scheduler.service import keys


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--label", default="", help="who the key is for (kept next to the hash)")
    p.add_argument(
        "--keys-file",
        type=Path,
        help="append the hash line to this keys file (created with mode 0600)",
    )


def run(args: argparse.Namespace) -> int:
    try:
        if args.keys_file:
            key, key_id = keys.add_key(args.keys_file, args.label)
            where = f"appended key id {key_id} to {args.keys_file}"
        else:
            key, line = keys.generate_key(args.label)
            where = f"add this line to the keys file (or its Secret):\n{line}"
    except (keys.KeyFileError, ValueError, OSError) as exc:
        raise CliError(str(exc)) from exc
    print(key)
    print(
        f"schedctl keygen: {where}\n"
        "Only the key's sha256 hash is stored: this is the one time the key is shown.",
        file=sys.stderr,
    )
    return 0
