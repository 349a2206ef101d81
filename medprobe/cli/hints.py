"""Fix hints that can be pasted as they are: a command line built from the options a user gave.

A hint that drops `--cache-root`, `--data-root` or `--weights` sends the pasted command to the
default cache, the default data or the hub, and the command that failed fails again.
"""

from __future__ import annotations

import shlex


def command_line(command: str, **flags) -> str:
    """`command --flag value ...` for every flag given (None: left out), quoted for a shell.

    `True` writes a bare `--flag`, `False` its `--no-flag`; underscores become dashes.
    """
    words = command.split()
    for name, value in flags.items():
        flag = "--" + name.replace("_", "-")
        if value is None:
            continue
        if value is True:
            words.append(flag)
        elif value is False:
            words.append(f"--no-{name.replace('_', '-')}")
        else:
            words += [flag, str(value)]
    return shlex.join(words)
