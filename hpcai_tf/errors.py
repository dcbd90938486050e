"""The one exception the CLI turns into a one-line error and exit code 2."""


class KitError(Exception):
    """A user-facing error: bad input, a missing tool, a request a site cannot satisfy.

    The message is one line that names the file or field and what was expected; the CLI prints it as
    ``hpcai: error: <message>`` and exits with status 2, without a traceback.
    """

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))
