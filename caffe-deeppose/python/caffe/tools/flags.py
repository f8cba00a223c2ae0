"""Command-line flags as Caffe's tools take them (gflags): `-flag=value`, `-flag value`,
`--flag=value`, booleans as `-flag`, `-flag=false` or `-noflag`; flags and positional arguments
may be mixed, and `--` ends the flags."""
import sys

_TRUE = {"true", "t", "yes", "y", "1"}
_FALSE = {"false", "f", "no", "n", "0"}


class FlagError(ValueError):
    """A command line that does not parse; the message says which flag and why."""


class Flag:
    __slots__ = ("default", "help")

    def __init__(self, default, help):
        self.default, self.help = default, help


def _convert(name, kind, text):
    if kind is bool:
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise FlagError(f"illegal value '{text}' specified for bool flag '{name}'")
    try:
        return kind(text)
    except ValueError:
        raise FlagError(f"illegal value '{text}' specified for {kind.__name__} flag '{name}'") from None


def parse(argv, flags):
    """Parse `argv` (without the program name) against `flags` ({name: Flag}); returns
    (values {name: value}, positional arguments)."""
    values = {name: f.default for name, f in flags.items()}
    positional = []
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":
            positional.extend(args[i:])
            break
        if not arg.startswith("-") or arg == "-":
            positional.append(arg)
            continue
        name, eq, text = arg.lstrip("-").partition("=")
        if name not in flags and name.startswith("no") and name[2:] in flags and not eq:
            if not isinstance(flags[name[2:]].default, bool):
                raise FlagError(f"boolean value specified for {type(flags[name[2:]].default).__name__} "
                                f"flag '{name[2:]}'")
            values[name[2:]] = False
            continue
        if name not in flags:
            raise FlagError(f"unknown command line flag '{name}'")
        kind = type(flags[name].default)
        if not eq:
            if kind is bool:
                values[name] = True
                continue
            if i == len(args):
                raise FlagError(f"flag '{arg}' is missing its argument")
            text = args[i]
            i += 1
        values[name] = _convert(name, kind, text)
    return values, positional


def usage(program, message, flags):
    lines = [f"{program}: {message}", "", "  Flags:"]
    for name, f in flags.items():
        lines.append(f"    -{name} ({f.help}) type: {type(f.default).__name__} default: {f.default!r}")
    return "\n".join(lines)


def parse_or_exit(argv, flags, program, message):
    """`parse`, printing gflags-style errors or the usage (for -help) and exiting with status 1."""
    if any(a.lstrip("-") in ("help", "helpshort") for a in argv if a.startswith("-")):
        print(usage(program, message, flags), file=sys.stderr)
        sys.exit(1)
    try:
        return parse(argv, flags)
    except FlagError as e:
        print(f"ERROR: {e}", file=sys.stderr)
        sys.exit(1)
