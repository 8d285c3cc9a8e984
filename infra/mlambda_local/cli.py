"""The ``mlambda`` command: run the local cloud, manage keys, and drive the platform's API.

Command groups live in ``mlambda_local.commands``; every module there with a
``register(groups)`` function is added, so a feature adds its commands without editing this file.
Global options (``--output``, ``--api-url``, ``--data-dir``...) are accepted before or after the
command. argparse (the standard library) rather than click or typer: neither accepts a group's
options after its subcommands, the commands are argparse already, and shtab completes them.

Exit codes: 0 ok, 1 partial, 2 usage, 3 auth, 4 not found, 5 conflict/invalid, 6 server/unreachable
(``mlambda_local.client.EXIT_CODES``); an expected failure is one line on stderr (``--debug``
adds the traceback).
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from mlambda import __version__
from mlambda.client import MlambdaClientError
from mlambda_local import commands
from mlambda_local.client import (
    EXIT_AUTH,
    EXIT_CODES,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    CliError,
    Project,
    exit_code,
)
from mlambda_local.cloud.errors import MlambdaLocalError
from mlambda_local.output import Outcome, emit

Handler = Callable[[argparse.Namespace], "Outcome | int"]
EXTRAS = {
    "pyarrow": "data",
    "pandas": "data",
    "sklearn": "dev",
    "skl2onnx": "dev",
    "onnx": "dev",
    "playwright": "dev",
}
"""Modules a command may need that the plain install lacks, and the extra bringing each (else
``local``: the local cloud and the server's dependencies)."""
LOCAL_EXTRA_MODULES = frozenset(
    {
        "moto",
        "samtranslator",
        "awslambdaric",
        "boto3",
        "botocore",
        "numpy",
        "onnxruntime",
        "pydantic",
        "pydantic_settings",
        "aws_lambda_powertools",
        "orjson",
        "arro3",
        "yaml",
        "werkzeug",
        "flask",
    }
)
EPILOG = "exit codes:\n" + "\n".join(f"  {code}  {meaning}" for code, meaning in EXIT_CODES.items())


def _global_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """The options every command takes; below the top they default to SUPPRESS, so a value given
    before the command is kept unless it is given again after it."""

    def default(value: Any) -> Any:
        return value if top else argparse.SUPPRESS

    group = parser.add_argument_group("global options")
    group.add_argument(
        "-o",
        "--output",
        choices=("table", "json"),
        default=default("table"),
        help="table for people (default), json for programs",
    )
    group.add_argument(
        "--data-dir",
        default=default(None),
        help="local cloud state (default: <project root>/.mlambda; the root is MLAMBDA_HOME or the "
        "nearest directory up holding template.yaml or .mlambda)",
    )
    group.add_argument(
        "--template", default=default(None), help="SAM template (default: <project root>/template.yaml)"
    )
    group.add_argument(
        "--api-url",
        default=default(None),
        help="API base URL (default: MLAMBDA_API_URL or the local cloud's)",
    )
    group.add_argument(
        "--api-key", default=default(None), help="API key (default: MLAMBDA_API_KEY or the local admin key)"
    )
    group.add_argument(
        "--debug", action="store_true", default=default(False), help="print the traceback of an error"
    )


def _subparsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """Every parser below ``parser``, at any depth."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                yield child
                yield from _subparsers(child)


def build_parser() -> argparse.ArgumentParser:
    """The full command line."""
    parser = argparse.ArgumentParser(
        prog="mlambda",
        description=__doc__.split("\n\n", 1)[0] if __doc__ else None,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"mlambda {__version__}")
    _global_options(parser, top=True)
    groups = parser.add_subparsers(dest="group", required=True, metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        module.register(groups)
    completion = groups.add_parser("completion", help="print a shell completion script (bash, zsh, tcsh)")
    completion.add_argument("shell", choices=("bash", "zsh", "tcsh"))
    completion.set_defaults(run=lambda args: _completion(parser, args.shell))
    for child in _subparsers(parser):
        child.epilog = child.epilog or EPILOG
        child.formatter_class = argparse.RawDescriptionHelpFormatter
        _global_options(child, top=False)
    return parser


def _completion(parser: argparse.ArgumentParser, shell: str) -> int:
    """``eval "$(mlambda completion bash)"``, or save it where the shell loads completions."""
    import shtab

    print(shtab.complete(parser, shell=shell))
    return 0


def _message(exc: BaseException) -> tuple[int, str] | None:
    """(exit code, one line) for an expected failure; None for a bug (raised with its traceback)."""
    if isinstance(exc, CliError | MlambdaClientError):
        return exit_code(exc), str(exc)
    if isinstance(exc, MlambdaLocalError):
        return EXIT_UNAVAILABLE, str(exc)
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        top = exc.name.split(".")[0]
        extra = EXTRAS.get(top) or ("local" if top in LOCAL_EXTRA_MODULES else None)
        if extra is not None:
            return EXIT_USAGE, f"this command needs {top}: pip install 'mlambda[{extra}]'"
        return None
    module = type(exc).__module__
    if module.startswith(("botocore", "boto3")):
        name = type(exc).__name__
        if name in ("NoCredentialsError", "PartialCredentialsError", "NoRegionError"):
            return EXIT_AUTH, f"AWS: {exc} (configure credentials: aws configure, or AWS_PROFILE)"
        code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
        if code in ("AccessDenied", "AccessDeniedException", "UnrecognizedClientException"):
            return EXIT_AUTH, f"AWS: {exc}"
        return EXIT_UNAVAILABLE, f"AWS: {exc}"
    if isinstance(exc, FileNotFoundError | IsADirectoryError | NotADirectoryError | PermissionError):
        return EXIT_USAGE, f"{exc.filename}: {exc.strerror}" if exc.filename else str(exc)
    return None


def _quiet_stdout() -> None:
    """After a broken pipe: point stdout at /dev/null so the interpreter's last flush stays silent."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mlambda`` console script; the exit code."""
    args = build_parser().parse_args(argv)
    project = Project.find(data_dir=args.data_dir, template=args.template)
    args.project = project
    args.data_dir = str(project.data_dir)
    args.template = str(project.template)
    run: Handler = args.run
    try:
        result = run(args)
        outcome = result if isinstance(result, Outcome) else Outcome(code=int(result))
        emit(outcome, args.output)
        sys.stdout.flush()
    except BrokenPipeError:  # `mlambda ... | head`: the reader has what it wanted
        _quiet_stdout()
        return 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        known = _message(exc)
        if known is None:
            raise
        if args.debug:
            traceback.print_exc()
        print(f"error: {known[1]}", file=sys.stderr)
        return known[0]
    return outcome.code


if __name__ == "__main__":
    sys.exit(main())
