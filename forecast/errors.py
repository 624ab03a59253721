"""Errors a user can fix: each message is one line that names the setting and the fix.

`forecast.data.DataError` is the one for bad data (file, column, row); `ConfigError` is the one
for options that cannot work together (a key, its value, and what to set instead).
"""


class ConfigError(ValueError):
    """A configuration that cannot run: the message names the key, its value and the fix."""
