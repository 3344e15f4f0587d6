"""ThingsBoard's OTA checksums (Guava's `HashCode.toString()`), computed piece by piece, and
the attributes a device gets for a package (`DefaultOtaPackageStateService`)."""

from __future__ import annotations

import pytest

from tinyboard.core.models import OtaPackage
from tinyboard.core.ota import Checksum, checksum_of, parse_algorithm
from tinyboard.core.ota_state import attribute_keys, shared_attributes, target_telemetry
from tinyboard.errors import PayloadError

FOX = b"The quick brown fox jumps over the lazy dog"


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [
        ("MD5", "9e107d9d372bb6826bd81d3542a419d6"),
        ("SHA256", "d7a8fbb307d7809469ca9abcb0082e4f8d5651e46d3cdb762d02d0bf37c9e592"),
        # Guava writes 32-bit hashes little-endian: CRC32 0x414fa339, murmur3_32 0x2e4ff723
        ("CRC32", "39a34f41"),
        ("MURMUR3_32", "23f74f2e"),
        ("MURMUR3_128", "6c1b07bc7bbc4be347939ac4a93c437a"),  # Guava's own test vector
    ],
)
def test_checksums_are_written_as_guava_writes_them(algorithm: str, expected: str) -> None:
    assert checksum_of(algorithm, FOX) == expected  # type: ignore[arg-type]
    pieces = Checksum(algorithm)  # type: ignore[arg-type]
    for i in range(0, len(FOX), 5):
        pieces.update(FOX[i : i + 5])
    assert pieces.hexdigest() == expected


def test_sha384_and_sha512_are_hex_of_the_digest() -> None:
    assert len(checksum_of("SHA384", b"")) == 96 and len(checksum_of("SHA512", b"")) == 128


def test_the_algorithm_is_read_case_insensitively_as_thingsboard() -> None:
    assert parse_algorithm("murmur3_128") == "MURMUR3_128"
    for bad in ("", None, "SHA1", "sha-256"):
        with pytest.raises(PayloadError):
            parse_algorithm(bad)


def package(**kw: object) -> OtaPackage:
    fields: dict[str, object] = {
        "id": "p", "created_ts": 1, "profile_id": "x", "type": "FIRMWARE", "title": "t",
        "version": "v", **kw,
    }  # fmt: skip
    return OtaPackage(**fields)  # type: ignore[arg-type]


def test_a_package_with_a_file_sets_its_size_and_checksum_and_drops_url_and_tag() -> None:
    stored = package(data_upload="u", data_size=10, checksum_algorithm="CRC32", checksum="ab")
    values, gone = shared_attributes(stored)
    assert values == {"fw_title": "t", "fw_version": "v", "fw_size": 10,
                      "fw_checksum_algorithm": "CRC32", "fw_checksum": "ab"}  # fmt: skip
    assert gone == ["fw_tag", "fw_url"]
    assert target_telemetry(stored, 5) == {"target_fw_title": "t", "target_fw_version": "v",
                                           "target_fw_ts": 5, "fw_state": "QUEUED"}  # fmt: skip


def test_a_url_package_sets_its_url_and_what_it_says_of_itself() -> None:
    remote = package(type="SOFTWARE", url="http://x", tag="t1", checksum_algorithm="MD5")
    values, gone = shared_attributes(remote)
    assert values == {"sw_title": "t", "sw_version": "v", "sw_tag": "t1", "sw_url": "http://x",
                      "sw_checksum_algorithm": "MD5"}  # fmt: skip
    assert gone == ["sw_size", "sw_checksum"]
    assert attribute_keys("SOFTWARE")[:2] == ["sw_title", "sw_version"]
    assert len(attribute_keys("FIRMWARE")) == 9
