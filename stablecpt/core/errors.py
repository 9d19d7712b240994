"""One error type for everything a user can get wrong: the CLI prints its message as one line."""


class UserError(ValueError):
    """Bad input (a config key, a file, a record). The message names what is wrong and where.

    A ValueError, so pydantic validators that raise it report it against the config key.
    """


class ConfigValueError(UserError):
    """A config value that passed validation but cannot be used, found when a command looks (a model folder that
    is absent, an attention kernel not installed). The command that loaded the config adds the file, so the line
    reads `<file>: key '<key>': <message>` like a validation error."""

    def __init__(self, key: str, message: str):
        super().__init__(f"key '{key}': {message}")
        self.key = key
