"""The two errors the command line turns into one line and exit code 2, before any work starts."""


class ConfigError(Exception):
    """A configuration problem, said in one line that names the file (or flag) and the key."""


class UsageError(Exception):
    """Bad usage of the command line, said in one line."""
