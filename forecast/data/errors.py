"""The one exception type for bad input data."""


class DataError(ValueError):
    """Input data that cannot be used as it is.

    The message names the file, the column, the first offending row and the fix.
    """
