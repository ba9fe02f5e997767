"""`rodinhd` entry point: parse → dispatch to the verb's `run(args)`; user mistakes become one line + exit 2."""
from __future__ import annotations

import argparse
import os
import sys
from importlib.metadata import PackageNotFoundError, version

from engine.config import ConfigError
from engine.errors import UserError

# Verb modules, each exposing register(subparsers). Imported lazily inside main() so `--help` stays fast.
VERB_MODULES = ["training.cli.synth_cmd", "training.cli.data_cmd", "training.cli.demo_cmd", "training.cli.runs_cmd",
                "training.cli.fit_cmd", "training.cli.fit_ablation_cmd", "training.cli.render_cmd",
                "training.cli.export_cmd", "training.cli.plot_cmd", "training.cli.train_cmd", "training.cli.model_cmd",
                "training.cli.generate_cmd", "training.cli.text2portrait_cmd", "training.cli.eval_cmd"]


def package_version() -> str:
    try:
        return version("rodinhd-studio")
    except PackageNotFoundError:
        return "0+unknown"


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = argparse.ArgumentParser(
        prog="rodinhd",
        description="RodinHD Studio: synthetic avatar data, triplane fitting, diffusion training and generation.",
    )
    parser.add_argument("--version", action="version", version=f"rodinhd {package_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in VERB_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing downloads at run time
    parser = build_parser()
    args = parser.parse_args(argv)
    from training.runs.folder import record_command

    record_command(sys.argv[1:] if argv is None else list(argv), os.getcwd())  # for command.json of new runs
    try:
        return int(args.handler(args) or 0)
    except (UserError, ConfigError) as exc:
        print(f"rodinhd {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - training stopped with its own clear message (no traceback)
        from training.runs import RunStopped, TrainingDiverged

        if isinstance(exc, RunStopped):
            print(f"rodinhd {args.command}: {exc}", file=sys.stderr)
            return 0
        if not isinstance(exc, TrainingDiverged):
            raise
        print(f"rodinhd {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"rodinhd {args.command}: cancelled", file=sys.stderr)
        return 130
    finally:
        record_command(None)


if __name__ == "__main__":
    sys.exit(main())
