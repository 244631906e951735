"""The one exception family that stages turn into a one-line message and exit code 2."""


class VitinspectError(Exception):
    """A user-facing error: bad params, missing or corrupt inputs. The message is one line."""


class ParamsError(VitinspectError):
    """A value in params.yaml is missing, of the wrong type or out of range."""
