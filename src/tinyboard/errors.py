"""One exception root for everything tinyboard raises on purpose.

Each message says what went wrong and what the user can do next.
"""


class TinyboardError(Exception):
    """Root of every error tinyboard raises deliberately."""


class ConfigError(TinyboardError):
    """A setting has a value tinyboard cannot use."""


class PortInUseError(TinyboardError):
    """A listener could not bind because the address is taken."""

    def __init__(self, what: str, host: str, port: int, flag: str, env: str) -> None:
        super().__init__(
            f"cannot listen for {what} on {host}:{port}: the port is already in use. "
            f"Stop the other program or choose another port with {flag} PORT (or {env})."
        )
        self.port = port
        self.flag = flag


class StorageError(TinyboardError):
    """The store could not complete an operation."""


class NotFoundError(StorageError):
    """The requested record does not exist."""


class ConflictError(StorageError):
    """The record would break a uniqueness rule (device name or token taken)."""


class InUseError(StorageError):
    """The record cannot go while others refer to it (a device profile with devices, the
    default profile): a bad request, as in ThingsBoard (HTTP 400)."""


class DataValidationError(StorageError):
    """A change the store refuses by one of ThingsBoard's data rules (an OTA package of
    another profile, a title and version taken): HTTP 400 with ThingsBoard's own text, as
    its DataValidationException."""


class PayloadError(TinyboardError):
    """A device sent a payload tinyboard cannot turn into readings."""


class StoreFullError(StorageError):
    """The disk under the store is full: nothing is committed until space is freed. Not the
    sender's fault, and it passes by itself, so devices are told to send again later."""

    retry_after = 30
    """Seconds an HTTP client is told to wait (`Retry-After`)."""


class RejectedDataError(StorageError):
    """The store refused a value or key it cannot hold (not its own state): only the
    pipeline job that carried it fails, the rest of its batch is written without it."""
