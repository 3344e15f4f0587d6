"""Devices downloading their OTA package: ThingsBoard's chunk protocol, for every transport
(MqttTransportHandler.getOtaPackageCallback, DeviceApiController.getOtaPackageCallback,
OtaPackageDataCache).

Strategy: a request names a chunk index and a chunk size; its answer is the bytes
`[chunk * size, (chunk + 1) * size)` of the package the device runs now (its own, else its
profile's), read with `Store.read_ota_range`, which reads only the stored chunks covering
that range. A chunk past the end is empty, as in ThingsBoard. A size over `max_chunk` is
refused, so no answer holds more than `max_chunk` bytes; a whole file (size 0) is streamed
over HTTP and, over MQTT, where it has to be one message, allowed up to `max_chunk` only.
The device is read from the store for each lookup (a session's `Device` may predate an
assignment); MQTT remembers a request id's package and size (`DownloadSession`), as
ThingsBoard's transport does, so a download costs one lookup, then one range read a chunk.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from tinyboard.core.models import Device, OtaPackage, OtaType
from tinyboard.errors import NotFoundError, PayloadError, TinyboardError
from tinyboard.storage.base import Store

DEFAULT_MAX_CHUNK = 65536
"""Bytes one chunk may hold: ThingsBoard's MQTT `maxPayloadSize` (netty.max_payload_size)."""
MAX_REQUESTS = 16
"""Request ids an MQTT session remembers (ThingsBoard keeps every one for the session)."""
SIZE_SHAPE = "a chunk request's payload is the chunk size in bytes as text (e.g. 65536) or empty"


class DownloadRefused(TinyboardError):
    """A download ThingsBoard refuses. `status` is the text MQTT publishes on `v2/fw/error`
    (a ResponseStatus name), `http_status` HTTP's answer."""

    status = "FAILURE"
    http_status = 404


class NotAssigned(DownloadRefused):
    status = "NOT_FOUND"


class UrlPackage(DownloadRefused):
    """The package gives a URL to fetch it from: there are no bytes to send."""


class ChunkTooLarge(DownloadRefused):
    status = "PAYLOAD_TOO_LARGE"
    http_status = 400


class StalePackage(DownloadRefused):
    """HTTP: the title or version asked for is not the package the device runs now."""

    http_status = 400


@dataclass(frozen=True, slots=True)
class Assignment:
    """The package a download reads, as a device asked for it."""

    package: OtaPackage
    size: int
    """Bytes per chunk; 0: the whole file."""


def parse_size(payload: bytes) -> int | None:
    """The chunk size an MQTT request carries; None when it carries none (empty or 0, as
    ThingsBoard reads it: the request id's earlier size, else the whole file)."""
    text = payload.strip()
    if not text:
        return None
    if not text.isdigit() or len(text) > 10:
        raise PayloadError(f"{SIZE_SHAPE}, not {payload[:20]!r}")
    return int(text) or None


class OtaDownloads:
    """Finds a device's package and reads the chunks it asks for (see the module)."""

    def __init__(self, store: Store, *, max_chunk: int = DEFAULT_MAX_CHUNK) -> None:
        self.store = store
        self.max_chunk = max_chunk

    async def assigned(self, device: Device, type: OtaType) -> OtaPackage:
        """The package of `type` the device runs now, with bytes to send."""
        try:
            current = await self.store.get_device(device.id)
            package_id = current.package_id(type)
            if package_id is None:
                package_id = (await self.store.get_profile(current.profile_id)).package_id(type)
            package = None if package_id is None else await self.store.get_ota_package(package_id)
        except NotFoundError:
            package = None
        name = type.lower()
        if package is None:
            raise NotAssigned(f"no {name} package is assigned to this device or its profile")
        if package.has_url:
            raise UrlPackage(f"the {name} package is at a URL ({package.url}): fetch it there")
        if package.data_upload is None:
            raise NotAssigned(f"the {name} package has no file uploaded yet")
        return package

    def checked(self, package: OtaPackage, size: int) -> Assignment:
        """`size` (0: whole file) if one answer may hold it, else `ChunkTooLarge`."""
        if size < 0:
            raise ChunkTooLarge(f"a chunk size is 0 (the whole file) or more, not {size}")
        if size > self.max_chunk:
            raise ChunkTooLarge(
                f"chunk size {size} is over the server's {self.max_chunk}-byte limit "
                "(--ota-max-chunk): ask for smaller chunks"
            )
        return Assignment(package, size)

    def checked_whole(self, package: OtaPackage, size: int) -> Assignment:
        """As `checked`, for a transport whose answer is one message: a whole file (size 0)
        over `max_chunk` bytes is refused too."""
        if size == 0 and (package.data_size or 0) > self.max_chunk:
            raise ChunkTooLarge(
                f"the package is {package.data_size} bytes, over the {self.max_chunk}-byte "
                "limit of one message (--ota-max-chunk): ask for it in chunks"
            )
        return self.checked(package, size)

    async def chunk(self, assignment: Assignment, index: int) -> bytes:
        """Chunk `index` (empty past the end; the whole file for size 0, index ignored)."""
        package, size = assignment.package, assignment.size
        offset, size = (0, package.data_size or 0) if size == 0 else (index * size, size)
        try:
            return await self.store.read_ota_range(package, offset, size)
        except NotFoundError:
            raise NotAssigned("the package was deleted while being downloaded") from None

    async def for_http(self, device: Device, type: OtaType, title: str, version: str) -> OtaPackage:
        """The package an HTTP download of `title`/`version` reads (ThingsBoard: 404 none
        assigned, 400 another title or version)."""
        package = await self.assigned(device, type)
        if (package.title, package.version) != (title, version):
            raise StalePackage(
                f"this device runs {type.lower()} {package.title!r} {package.version!r}, "
                f"not {title!r} {version!r}: read the {_prefix(type)}_title and "
                f"{_prefix(type)}_version shared attributes again"
            )
        return package

    def whole(self, package: OtaPackage) -> AsyncIterator[bytes]:
        """The package's bytes, a few stored chunks at a time (for a streamed download)."""
        return self.store.ota_data(package)


def _prefix(type: OtaType) -> str:
    return "fw" if type == "FIRMWARE" else "sw"


class DownloadSession:
    """One MQTT session's downloads: ThingsBoard's `chunkSizes` and `otaPackSessions`.

    A request id keeps the size it was first given (an empty payload reuses it; never
    given: 0, the whole file) and the package found for it, so a reassignment needs a new
    request id, as in ThingsBoard. Only the last `MAX_REQUESTS` ids are remembered."""

    __slots__ = ("_downloads", "_requests")

    def __init__(self, downloads: OtaDownloads) -> None:
        self._downloads = downloads
        self._requests: dict[tuple[OtaType, int], Assignment] = {}

    async def answer(
        self, device: Device, type: OtaType, request_id: int, index: int, size: int | None
    ) -> bytes:
        """The bytes of chunk `index` of request `request_id`; `DownloadRefused` else."""
        downloads = self._downloads
        key = (type, request_id)
        known = self._requests.get(key)
        if known is None:
            package = await downloads.assigned(device, type)
        else:
            package = known.package
        if size is None:
            size = 0 if known is None else known.size
        assignment = downloads.checked_whole(package, size)
        self._remember(key, assignment)
        return await downloads.chunk(assignment, index)

    def _remember(self, key: tuple[OtaType, int], assignment: Assignment) -> None:
        requests = self._requests
        requests.pop(key, None)
        if len(requests) >= MAX_REQUESTS:
            del requests[next(iter(requests))]
        requests[key] = assignment
