"""Errors that services raise for bad input; views and the API turn them into 400 responses."""


class InvalidInput(Exception):
    """Bad input, with messages per field that tell the user what to do."""

    def __init__(self, errors: dict[str, list[str] | str]):
        self.errors = {field: [msgs] if isinstance(msgs, str) else list(msgs) for field, msgs in errors.items()}
        super().__init__("; ".join(f"{f}: {' '.join(m)}" for f, m in self.errors.items()))
