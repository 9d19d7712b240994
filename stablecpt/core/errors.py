"""One error type for everything a user can get wrong: the CLI prints its message as one line."""


class UserError(ValueError):
    """Bad input (a config key, a file, a record). The message names what is wrong and where.

    A ValueError, so pydantic validators that raise it report it against the config key.
    """
