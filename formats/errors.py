from __future__ import annotations


class FormatError(ValueError):
    """A file that cannot be read as the format it claims; ``problems`` lists the first few issues."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        self.problems = problems or [message]
        super().__init__(message if not problems else f"{message}: " + "; ".join(problems))
