"""OTA packages: ThingsBoard's checksums, and the rules an upload passes before its bytes
become a package's data (OtaPackageController, DefaultTbOtaPackageService,
OtaPackageDataValidator and BaseOtaPackageService's `generateChecksum`).

Strategy: the bytes stream through once: each piece is hashed and handed to the store,
which writes it in chunks; the checksum is compared at the end, and a mismatch (or any
other refusal) makes the store drop what it wrote. No step holds the whole image.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import replace
from typing import Protocol

import mmh3

from tinyboard.core.models import CHECKSUM_ALGORITHMS, ChecksumAlgorithm, OtaPackage
from tinyboard.errors import DataValidationError, PayloadError
from tinyboard.storage.base import Store

WRONG_FILE = "Wrong otaPackage file!"
NO_DATA = "OtaPackage data should be specified!"
URL_SET = "Updating otaPackage URL is prohibited!"
DATA_SET = "Updating otaPackage data is prohibited!"
NO_FILE_NAME = "OtaPackage file name should be specified!"
NO_CONTENT_TYPE = "OtaPackage content type should be specified!"
"""ThingsBoard's texts (DataValidationException: HTTP 400)."""


class _Hasher(Protocol):
    def update(self, data: bytes, /) -> None: ...

    def digest(self) -> bytes: ...


class _Crc32:
    def __init__(self) -> None:
        self._value = 0

    def update(self, data: bytes) -> None:
        self._value = zlib.crc32(data, self._value)

    def digest(self) -> bytes:
        # Guava's Hashing.crc32() is HashCode.fromInt(value): its bytes little-endian.
        return self._value.to_bytes(4, "little")


def _hasher(algorithm: ChecksumAlgorithm) -> _Hasher:
    if algorithm == "CRC32":
        return _Crc32()
    if algorithm == "MURMUR3_32":
        return mmh3.mmh3_32()  # digest(): Guava's murmur3_32 bytes, little-endian
    if algorithm == "MURMUR3_128":
        return mmh3.mmh3_x64_128()  # digest(): h1 then h2, little-endian, as Guava
    return hashlib.new(algorithm.lower())  # md5, sha256, sha384, sha512


class Checksum:
    """A checksum computed piece by piece, written as ThingsBoard writes it: Guava's
    `HashCode.toString()`, the hash's bytes in lowercase hex (for CRC32 and MURMUR3_32 the
    32-bit value little-endian, e.g. CRC32 0xd87f7e0c is "0c7e7fd8")."""

    def __init__(self, algorithm: ChecksumAlgorithm) -> None:
        self.algorithm = algorithm
        self._hasher = _hasher(algorithm)

    def update(self, data: bytes) -> None:
        self._hasher.update(data)

    def hexdigest(self) -> str:
        return self._hasher.digest().hex()


def checksum_of(algorithm: ChecksumAlgorithm, data: bytes) -> str:
    checksum = Checksum(algorithm)
    checksum.update(data)
    return checksum.hexdigest()


def parse_algorithm(text: str | None) -> ChecksumAlgorithm:
    """`checksumAlgorithm` as ThingsBoard reads it (`valueOf(text.toUpperCase())`)."""
    if not text:
        raise PayloadError("Required request parameter 'checksumAlgorithm' is not present")
    for algorithm in CHECKSUM_ALGORITHMS:
        if text.upper() == algorithm:
            return algorithm
    known = ", ".join(CHECKSUM_ALGORITHMS)
    raise PayloadError(f"unknown checksumAlgorithm {text[:40]!r}: use one of {known}")


async def upload(
    store: Store,
    package: OtaPackage,
    source: AsyncIterable[bytes],
    *,
    algorithm: ChecksumAlgorithm,
    checksum: str | None,
    file_name: str,
    content_type: str,
) -> OtaPackage:
    """Make `source` the package's data: hashed with `algorithm` as it streams into the
    store; a given `checksum` must match it (else "Wrong otaPackage file!" and nothing is
    kept), an empty one is filled in. A package that has its data already keeps it: sending
    the same file again changes nothing, another one is refused, as in ThingsBoard."""
    if package.has_url:
        raise DataValidationError(URL_SET)
    if not file_name:
        raise DataValidationError(NO_FILE_NAME)
    if not content_type:
        raise DataValidationError(NO_CONTENT_TYPE)
    if package.data_upload is not None:
        same = (package.file_name, package.content_type, package.checksum_algorithm) == (
            file_name, content_type, algorithm
        )  # fmt: skip
        if same and await _same_bytes(store.ota_data(package), aiter(source)):
            return package
        raise DataValidationError(DATA_SET)
    hasher = Checksum(algorithm)

    async def hashed() -> AsyncIterator[bytes]:
        async for piece in source:
            hasher.update(piece)
            yield piece

    def complete(size: int) -> OtaPackage:
        if size == 0:
            raise DataValidationError(NO_DATA)
        computed = hasher.hexdigest()
        if checksum and checksum != computed:
            raise DataValidationError(WRONG_FILE)
        return replace(
            package,
            file_name=file_name,
            content_type=content_type,
            checksum_algorithm=algorithm,
            checksum=computed,
            data_size=size,
        )

    return await store.save_ota_data(package.id, hashed(), complete)


async def _same_bytes(a: AsyncIterator[bytes], b: AsyncIterator[bytes]) -> bool:
    """Whether two streams hold the same bytes, however they are cut, holding at most a
    piece of each."""
    left = right = b""
    while True:
        if not left:
            left = await anext(a, b"")
        if not right:
            right = await anext(b, b"")
        if not left or not right:
            return left == right and not await anext(a, b"") and not await anext(b, b"")
        n = min(len(left), len(right))
        if left[:n] != right[:n]:
            return False
        left, right = left[n:], right[n:]
