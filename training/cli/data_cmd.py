"""`rodinhd data import|check|preview`: bring datasets in, validate them, look at them."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engine.errors import UserError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `data` verb and its three actions to the top-level parser."""
    data = subparsers.add_parser(
        "data", help="import, check and preview avatar datasets",
        description="Work with datasets in the rodinhd format (one folder per avatar + index.json).",
    )
    actions = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    _register_import(actions)
    _register_check(actions)
    _register_preview(actions)


def _register_import(actions: argparse._SubParsersAction) -> None:
    p = actions.add_parser(
        "import", help="import NeRF-synthetic scenes or RodinHD avatar folders",
        description="Convert a NeRF-synthetic scene (Blender or instant-ngp transforms) or a RodinHD avatar "
                    "folder (img_proc_fg_%06d.png + metadata_%06d.json), or a folder of them, into a dataset.",
    )
    p.add_argument("src", type=Path, metavar="SRC", help="one scene/avatar folder, or a folder holding one sub-folder per avatar")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="dataset folder to write (created if missing)")
    p.add_argument("--kind", choices=["auto", "nerf", "rodin"], default="auto",
                   help="source layout (default: auto-detect per folder)")
    p.add_argument("--scale", type=float, default=None,
                   help="multiply camera translations by this (default: 1.0 for NeRF, 0.6/23 for RodinHD)")
    p.add_argument("--up", choices=["y", "z"], default=None,
                   help="NeRF only: the source world's up axis; 'z' rotates Blender's Z-up world to Y-up "
                        "(default: y)")
    p.add_argument("--portrait-frame", type=int, default=None, metavar="I",
                   help="NeRF only: index of the training frame used as the portrait and view 0 (default: 0)")
    p.add_argument("--test-every", type=int, default=None, metavar="N",
                   help="RodinHD only: hold out every N-th view after view 0 as a test view (default: 0 = none)")
    p.add_argument("--overwrite", action="store_true",
                   help="write into a non-empty --out, replacing avatars of the same name")
    p.set_defaults(handler=run_import)


def _register_check(actions: argparse._SubParsersAction) -> None:
    p = actions.add_parser(
        "check", help="validate a dataset and list every problem",
        description="Check a dataset folder; prints one problem per line and a summary. "
                    "Exit status 1 if there is any error, 0 otherwise (warnings alone pass).",
    )
    p.add_argument("dir", type=Path, metavar="DIR", help="dataset folder (holds index.json)")
    p.add_argument("--full", action="store_true",
                   help="decode every image's pixels (default: headers for all, pixels for a sample)")
    p.set_defaults(handler=run_check)


def _register_preview(actions: argparse._SubParsersAction) -> None:
    p = actions.add_parser(
        "preview", help="write a contact sheet PNG of a dataset",
        description="Draw the portraits of a dataset in a grid, or with --views N one row per avatar: "
                    "the portrait then N training views.",
    )
    p.add_argument("dir", type=Path, metavar="DIR", help="dataset folder (holds index.json)")
    p.add_argument("--out", type=Path, required=True, metavar="PNG", help="PNG file to write")
    p.add_argument("--views", type=int, default=0, metavar="N",
                   help="training views per avatar after the portrait (default: 0 = portraits only)")
    p.add_argument("--max-avatars", type=int, default=64, metavar="M", help="show at most M avatars (default: 64)")
    p.add_argument("--cell", type=int, default=128, metavar="PX", help="cell size in pixels (default: 128)")
    p.add_argument("--columns", type=int, default=None, metavar="C",
                   help="grid width for a portraits-only sheet (default: near-square)")
    p.add_argument("--avatar", action="append", default=None, metavar="ID",
                   help="show this avatar (repeat for several; default: all)")
    p.add_argument("--no-labels", action="store_true", help="leave out the avatar ids under the cells")
    p.set_defaults(handler=run_preview)


def run_import(args: argparse.Namespace) -> int:
    from training.data.importing import import_dataset

    result = import_dataset(
        args.src, args.out, kind=args.kind, overwrite=args.overwrite,
        scale=args.scale, up=args.up, portrait_frame=args.portrait_frame, test_every=args.test_every,
    )
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    kinds = ", ".join(sorted(set(result.kinds.values())))
    print(f"imported {len(result.avatars)} avatar(s) ({kinds}) into {result.out}")
    return 0


def run_check(args: argparse.Namespace) -> int:
    from training.data.check import check_dataset

    problems = check_dataset(args.dir, full=args.full)
    for problem in problems:
        print(problem)
    errors = sum(p.severity == "error" for p in problems)
    warnings = len(problems) - errors
    print(f"{args.dir}: {errors} error(s), {warnings} warning(s)" + ("" if problems else " - dataset OK"))
    return 1 if errors else 0


def run_preview(args: argparse.Namespace) -> int:
    from training.data.preview import contact_sheet

    if args.columns is not None and args.views:
        raise UserError("--columns applies to a portraits-only sheet; leave it out with --views")
    out = contact_sheet(args.dir, args.out, avatars=args.avatar, views_per_avatar=args.views, cell=args.cell,
                        columns=args.columns, label=not args.no_labels, max_avatars=args.max_avatars)
    print(f"wrote {out}")
    return 0
