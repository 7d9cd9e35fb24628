"""Single key presses from a terminal, without Enter or echo (termios, POSIX)."""

from __future__ import annotations

import os
import select
import sys

from al4dstem.errors import Al4dstemError

CTRL_C, CTRL_D = "\x03", "\x04"


def require_terminal(stream=None) -> None:
    """Raise a user error unless ``stream`` (stdin) is an interactive terminal."""
    stream = sys.stdin if stream is None else stream
    try:
        interactive = os.isatty(stream.fileno())
    except (AttributeError, ValueError, OSError):
        interactive = False
    if not interactive:
        raise Al4dstemError("the terminal oracle needs an interactive terminal; use --truth TRUTH.csv "
                            "to label from a file")


class KeyReader:
    """Context manager putting a terminal in non-canonical, no-echo mode; ``read()`` returns one key.

    Signals are off while it is active, so Ctrl-C arrives as the key ``"\\x03"`` instead of
    interrupting whatever the program was doing; escape sequences (arrows, function keys)
    come back as ``""``. End of input reads as Ctrl-D.
    """

    def __init__(self, stream=None):
        self.stream = stream

    def __enter__(self) -> KeyReader:
        import termios

        require_terminal(self.stream)
        self.fd_ = (sys.stdin if self.stream is None else self.stream).fileno()
        self.saved_ = termios.tcgetattr(self.fd_)
        mode = termios.tcgetattr(self.fd_)
        mode[3] &= ~(termios.ICANON | termios.ECHO | termios.ISIG)
        mode[6][termios.VMIN], mode[6][termios.VTIME] = 1, 0
        termios.tcsetattr(self.fd_, termios.TCSANOW, mode)
        return self

    def __exit__(self, *exc) -> None:
        import termios

        termios.tcsetattr(self.fd_, termios.TCSANOW, self.saved_)

    def read(self) -> str:
        """The next key pressed (blocks)."""
        first = os.read(self.fd_, 1)
        if not first:
            return CTRL_D
        if first == b"\x1b":  # swallow the rest of an escape sequence
            while select.select([self.fd_], [], [], 0.02)[0]:
                os.read(self.fd_, 16)
            return ""
        return first.decode(errors="ignore")
