"""OTA packages with ThingsBoard's REST client (`tb-rest-client` 4.3) against a real
tinyboard, on SQLite and on PostgreSQL: infos, uploads (checksums computed and verified,
the route's own size cap), lists, downloads, assignment to profiles and devices (devices
connected over MQTT are told, as ThingsBoard tells them) and deletion."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import queue
import socket
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import mmh3
import pytest
from tb_rest_client.models.models_ce import (
    Device,
    DeviceId,
    DeviceProfile,
    DeviceProfileId,
    OtaPackage,
    OtaPackageId,
    OtaPackageInfo,
    SaveOtaPackageInfoRequest,
)
from tb_rest_client.rest import ApiException
from tb_rest_client.rest_client_ce import RestClientCE

from tests.helpers import ServerThread
from tests.mqtt_clients import Device as Board
from tests.test_store_ota import sql
from tests.web_helpers import login
from tinyboard.web.entities import TENANT_UUID

TIMEOUT = 10
FW_KEYS = ["fw_title", "fw_version", "fw_ts", "fw_state", "fw_size", "fw_checksum",
           "fw_checksum_algorithm", "fw_url", "fw_tag"]  # fmt: skip
"""What ThingsBoard deletes when a device no longer has firmware (OtaPackageKey's order)."""


@pytest.fixture
def server(server_on_each_store: ServerThread) -> ServerThread:
    return server_on_each_store


@pytest.fixture
def client(server: ServerThread) -> Iterator[RestClientCE]:
    rest = RestClientCE(base_url=server.base_url)
    rest.login(*server.admin)
    yield rest
    rest.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def small_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerThread]:
    """A server whose uploads may carry at most 200,000 bytes, on each store in turn."""
    extra: dict[str, Any] = {"ota_max_size": 200_000}
    if request.param == "postgres":
        extra["store"] = request.getfixturevalue("postgres_url")()
    running = ServerThread(tmp_path / "data", **extra).start()
    try:
        yield running
    finally:
        running.stop()


def error_of(exc: pytest.ExceptionInfo[ApiException]) -> tuple[int, str]:
    body = json.loads(exc.value.body)
    assert set(body) == {"status", "message", "errorCode", "timestamp"}
    assert body["status"] == exc.value.status
    return exc.value.status, body["message"]


def new_info(
    client: RestClientCE, profile: DeviceProfileId, version: str = "1.0", **kw: Any
) -> OtaPackageInfo:
    kw.setdefault("title", "fw")
    kw.setdefault("type", "FIRMWARE")
    info = client.save_ota_package_info(
        SaveOtaPackageInfoRequest(version=version, device_profile_id=profile, **kw)
    )
    assert isinstance(info, OtaPackageInfo)
    return info


def upload(
    client: RestClientCE,
    info: OtaPackageInfo,
    data: bytes,
    folder: Path,
    *,
    algorithm: str = "SHA256",
    checksum: str | None = None,
    name: str = "firmware.bin",
) -> OtaPackageInfo:
    path = folder / name
    path.write_bytes(data)
    saved = client.save_ota_package_data(
        info.id, checksum=checksum, checksum_algorithm=algorithm, file=str(path)
    )
    assert isinstance(saved, OtaPackageInfo)
    return saved


def download(client: RestClientCE, info: OtaPackageInfo) -> Any:
    """The raw answer: the client's `download_ota_package` cannot read binary bodies."""
    return client.ota_package_controller.download_ota_package_using_get(
        ota_package_id=info.id.id, _preload_content=False
    )


def download_refused(client: RestClientCE, info: OtaPackageInfo) -> int:
    with pytest.raises(ApiException) as refused:
        download(client, info)
    return error_of(refused)[0]


def profile(client: RestClientCE, name: str) -> DeviceProfile:
    made = client.save_device_profile(DeviceProfile(name=name, type="DEFAULT"))
    assert isinstance(made, DeviceProfile)
    return made


def chunk_rows(server: ServerThread) -> int:
    return int(server.call(sql(server.server.store, "SELECT count(*) FROM ota_chunk"))[0][0])


def test_a_package_is_created_uploaded_listed_and_downloaded(
    client: RestClientCE, server: ServerThread, tmp_path: Path
) -> None:
    boards = profile(client, "boards")
    info = new_info(client, boards.id, tag="v1", additional_info={"description": "first"})
    assert (info.title, info.version, info.tag, info.type) == ("fw", "1.0", "v1", "FIRMWARE")
    assert (info.has_data, info.data_size, info.checksum, info.url) == (False, None, None, None)
    assert (info.tenant_id.id, info.device_profile_id.id) == (TENANT_UUID, boards.id.id)
    assert info.additional_info == {"description": "first"} and info.created_time > 0

    data = os.urandom(300_000)
    saved = upload(client, info, data, tmp_path)  # no checksum: computed
    assert saved.has_data and saved.data_size == len(data)
    assert (saved.checksum_algorithm, saved.checksum) == (
        "SHA256",
        hashlib.sha256(data).hexdigest(),
    )
    assert (saved.file_name, saved.content_type) == ("firmware.bin", "application/octet-stream")
    assert client.get_ota_package_info_by_id(info.id) == saved

    raw = download(client, info)
    assert raw.status == 200 and raw.data == data
    assert raw.headers["Content-Type"] == "application/octet-stream"
    assert raw.headers["Content-Disposition"] == "attachment;filename=firmware.bin"
    assert raw.headers["x-filename"] == "firmware.bin"
    whole = client.get_ota_package_by_id(info.id)
    assert isinstance(whole, OtaPackage) and whole.has_data and whole.checksum == saved.checksum
    with httpx.Client(base_url=server.base_url, headers=login(server)) as http:
        as_json = http.get(f"/api/otaPackage/{info.id.id}").json()
    assert base64.b64decode(as_json["data"]) == data and as_json["name"] == "fw"

    # bigger than --http-max-body (1 MiB): the upload route has its own cap
    big = os.urandom(1_500_000)
    large = upload(client, new_info(client, boards.id, "2.0"), big, tmp_path, name="big.bin")
    assert large.data_size == len(big) and download(client, large).data == big


def test_checksums_are_thingsboard_s(client: RestClientCE, tmp_path: Path) -> None:
    """Each algorithm's checksum as Guava writes it (the 32-bit ones little-endian), and a
    client's matching one is accepted."""
    boards = profile(client, "boards")
    data = os.urandom(70_000)
    expected = {
        "MD5": hashlib.md5(data).hexdigest(),
        "SHA384": hashlib.sha384(data).hexdigest(),
        "SHA512": hashlib.sha512(data).hexdigest(),
        "CRC32": zlib.crc32(data).to_bytes(4, "little").hex(),
        "MURMUR3_32": mmh3.hash(data, signed=False).to_bytes(4, "little").hex(),
        "MURMUR3_128": mmh3.hash_bytes(data).hex(),
    }
    for n, (algorithm, checksum) in enumerate(expected.items()):
        info = new_info(client, boards.id, f"c{n}")
        given = checksum if n % 2 else None
        saved = upload(client, info, data, tmp_path, algorithm=algorithm.lower(), checksum=given)
        assert (saved.checksum_algorithm, saved.checksum) == (algorithm, checksum)


def test_a_wrong_checksum_is_refused_and_nothing_is_kept(
    client: RestClientCE, server: ServerThread, tmp_path: Path
) -> None:
    boards = profile(client, "boards")
    info = new_info(client, boards.id)
    data = os.urandom(200_000)
    with pytest.raises(ApiException) as wrong:
        upload(client, info, data, tmp_path, checksum="0" * 64)
    assert error_of(wrong) == (400, "Wrong otaPackage file!")
    with pytest.raises(ApiException) as unknown:
        upload(client, info, data, tmp_path, algorithm="SHA1")
    assert error_of(unknown)[0] == 400
    with pytest.raises(ApiException) as empty:
        upload(client, info, b"", tmp_path)
    assert error_of(empty) == (400, "OtaPackage data should be specified!")
    assert client.get_ota_package_info_by_id(info.id) == info and not info.has_data
    assert chunk_rows(server) == 0 and download_refused(client, info) == 404

    saved = upload(client, info, data, tmp_path, checksum=hashlib.sha256(data).hexdigest())
    assert saved.has_data
    assert upload(client, info, data, tmp_path) == saved  # the same file again: nothing new
    with pytest.raises(ApiException) as replaced:
        upload(client, info, os.urandom(10), tmp_path)
    assert error_of(replaced) == (400, "Updating otaPackage data is prohibited!")
    assert download(client, info).data == data


def test_a_file_over_ota_max_size_is_refused_with_413_and_nothing_is_kept(
    small_server: ServerThread, tmp_path: Path
) -> None:
    client = RestClientCE(base_url=small_server.base_url)
    client.login(*small_server.admin)
    try:
        info = new_info(client, profile(client, "boards").id)
        for size in (200_001, 600_000):  # refused by the route; by the HTTP layer at once
            with pytest.raises(ApiException) as too_big:
                upload(client, info, os.urandom(size), tmp_path)
            status, message = error_of(too_big)
            assert status == 413 and "--ota-max-size" in message
        assert not client.get_ota_package_info_by_id(info.id).has_data
        assert chunk_rows(small_server) == 0
        assert upload(client, info, os.urandom(200_000), tmp_path).data_size == 200_000
    finally:
        client.stop()


def test_lists_page_filter_and_sort_as_thingsboard(client: RestClientCE, tmp_path: Path) -> None:
    boards, other = profile(client, "boards"), profile(client, "other")
    made = {}
    for title, version, owner in (("alpha", "1", boards), ("beta", "1", boards),
                                  ("Alphabet", "2", other), ("gamma", "1", boards)):  # fmt: skip
        made[title] = new_info(client, owner.id, version, title=title)
    upload(client, made["alpha"], b"a" * 10, tmp_path)
    upload(client, made["Alphabet"], b"b" * 10, tmp_path)
    new_info(client, boards.id, "u", title="remote", url="http://example.com/fw.bin", uses_url=True)
    software = new_info(client, boards.id, "s", title="sw", type="SOFTWARE")
    upload(client, software, b"s", tmp_path)

    page = client.get_ota_packages(2, 0, sort_property="title", sort_order="ASC")
    assert type(page).__name__ == "PageDataOtaPackageInfo"  # its CE or (same keys) PE model
    assert [p.title for p in page.data] == ["Alphabet", "alpha"]
    assert (page.total_elements, page.total_pages, page.has_next) == (6, 3, True)
    found = client.get_ota_packages(10, 0, text_search="ALPHA")
    assert sorted(p.title for p in found.data) == ["Alphabet", "alpha"]
    by_size = client.get_ota_packages(10, 0, sort_property="dataSize", sort_order="DESC")
    assert [p.data_size for p in by_size.data][:3] == [None, None, None]  # as PostgreSQL
    usable = client.get_ota_packages_v1(boards.id, "FIRMWARE", 10, 0, sort_property="title")
    assert [p.title for p in usable.data] == ["alpha", "remote"]  # a file or a URL
    assert [p.title for p in client.get_ota_packages_v1(boards.id, "SOFTWARE", 10, 0).data] == [
        "sw"
    ]
    with pytest.raises(ApiException) as bad:
        client.get_ota_packages(10, 0, sort_property="nope")
    assert error_of(bad)[0] == 400


def test_url_packages_and_info_updates_follow_thingsboard(
    client: RestClientCE, tmp_path: Path
) -> None:
    boards = profile(client, "boards")
    with pytest.raises(ApiException) as no_url:
        new_info(client, boards.id, uses_url=True)
    assert error_of(no_url) == (400, "Ota package URL should be specified!")
    remote = new_info(
        client, boards.id, url="http://example.com/fw.bin", uses_url=True,
        checksum_algorithm="SHA256", checksum="ab" * 32,
    )  # fmt: skip
    assert remote.has_data and remote.url == "http://example.com/fw.bin"
    assert remote.checksum == "ab" * 32
    with pytest.raises(ApiException) as upload_to_url:
        upload(client, remote, b"x", tmp_path)
    assert error_of(upload_to_url) == (400, "Updating otaPackage URL is prohibited!")
    assert download_refused(client, remote) == 400
    with pytest.raises(ApiException) as taken:
        new_info(client, boards.id)
    assert error_of(taken) == (400, "OtaPackage with such title and version already exists!")
    for field, value, text in (
        ("version", "9", "Updating otaPackage version is prohibited!"),
        ("title", "other", "Updating otaPackage title is prohibited!"),
        ("tag", "t", "Updating otaPackage tag is prohibited!"),
    ):
        request = SaveOtaPackageInfoRequest(**{**_fields(remote), field: value})
        with pytest.raises(ApiException) as changed:
            client.save_ota_package_info(request)
        assert error_of(changed) == (400, text)
    described = client.save_ota_package_info(
        SaveOtaPackageInfoRequest(**{**_fields(remote), "additional_info": {"description": "d"}})
    )
    assert described.additional_info == {"description": "d"} and described.id == remote.id
    with pytest.raises(ApiException) as untitled:
        client.save_ota_package_info(SaveOtaPackageInfoRequest(version="1", type="FIRMWARE"))
    assert error_of(untitled) == (400, "OtaPackage title should be specified!")


def _fields(info: OtaPackageInfo) -> dict[str, Any]:
    keep = ("id", "device_profile_id", "type", "title", "version", "tag", "url",
            "file_name", "content_type", "checksum_algorithm", "checksum", "data_size",
            "additional_info")  # fmt: skip
    return {k: getattr(info, k) for k in keep}


class Listener:
    """A board connected over MQTT that collects its shared-attribute pushes."""

    def __init__(self, server: ServerThread, client: RestClientCE, device: Device) -> None:
        token = client.get_device_credentials_by_device_id(device.id).credentials_id
        self.board = Board(server.mqtt_port, token)
        self.board.subscribe("v1/devices/me/attributes")

    def next(self) -> dict[str, Any]:
        message = self.board.next_message(TIMEOUT)
        assert message.topic == "v1/devices/me/attributes"
        update: dict[str, Any] = json.loads(message.payload)
        return update

    def quiet(self) -> bool:
        try:
            self.board.next_message(0.3)
        except queue.Empty:
            return True
        return False

    def close(self) -> None:
        self.board.close()


def told_to_run(info: OtaPackageInfo, prefix: str = "fw") -> list[dict[str, Any]]:
    """What ThingsBoard pushes to a device given a package with a file and no tag."""
    return [
        {"deleted": [f"{prefix}_tag", f"{prefix}_url"]},
        {
            f"{prefix}_title": info.title,
            f"{prefix}_version": info.version,
            f"{prefix}_size": info.data_size,
            f"{prefix}_checksum_algorithm": info.checksum_algorithm,
            f"{prefix}_checksum": info.checksum,
        },
    ]


def test_assignment_tells_connected_devices_and_the_device_s_own_wins(
    client: RestClientCE, server: ServerThread, tmp_path: Path
) -> None:
    boards, other = profile(client, "boards"), profile(client, "other")
    one = client.save_device(Device(name="one", device_profile_id=boards.id))
    two = client.save_device(Device(name="two", device_profile_id=boards.id))
    fw1 = upload(client, new_info(client, boards.id, "1.0"), os.urandom(100_000), tmp_path)
    fw2 = upload(client, new_info(client, boards.id, "2.0"), os.urandom(50_000), tmp_path)
    a, b = Listener(server, client, one), Listener(server, client, two)
    try:
        boards.firmware_id = OtaPackageId(fw1.id.id, "OTA_PACKAGE")
        assert client.save_device_profile(boards).firmware_id.id == fw1.id.id
        for board in (a, b):
            assert [board.next(), board.next()] == told_to_run(fw1)

        one.firmware_id = OtaPackageId(fw2.id.id, "OTA_PACKAGE")
        one = client.save_device(one)
        assert one.firmware_id.id == fw2.id.id
        assert [a.next(), a.next()] == told_to_run(fw2) and b.quiet()

        boards.firmware_id = OtaPackageId(fw2.id.id, "OTA_PACKAGE")  # the profile moves on
        client.save_device_profile(boards)
        assert [b.next(), b.next()] == told_to_run(fw2) and a.quiet()  # one has its own
        boards.firmware_id = OtaPackageId(fw1.id.id, "OTA_PACKAGE")
        client.save_device_profile(boards)
        assert [b.next(), b.next()] == told_to_run(fw1) and a.quiet()

        one.firmware_id = None  # back to the profile's
        one = client.save_device(one)
        assert [a.next(), a.next()] == told_to_run(fw1)

        boards.firmware_id = None
        client.save_device_profile(boards)
        for board in (a, b):
            assert board.next() == {"deleted": FW_KEYS}
        did = DeviceId(two.id.id, "DEVICE")
        assert not [x for x in client.get_attributes_by_scope(did, "SHARED_SCOPE")]
        state = client.get_latest_timeseries(did, "fw_state,target_fw_title,target_fw_version")
        assert state["fw_state"][0]["value"] == "INITIATED"
        assert (state["target_fw_title"][0]["value"], state["target_fw_version"][0]["value"]) == (
            "fw", "1.0"
        )  # fmt: skip
    finally:
        a.close()
        b.close()
    stored = {x["key"]: x["value"] for x in client.get_attributes_by_scope(
        DeviceId(one.id.id, "DEVICE"), "SHARED_SCOPE")}  # fmt: skip
    assert stored == {}

    # moving a device to a profile that runs something tells it; its own must fit the new one
    fw_other = upload(client, new_info(client, other.id, "o"), b"o" * 1000, tmp_path)
    other.firmware_id = OtaPackageId(fw_other.id.id, "OTA_PACKAGE")
    other = client.save_device_profile(other)
    c = Listener(server, client, two)
    try:
        two.device_profile_id = other.id
        client.save_device(two)
        assert [c.next(), c.next()] == told_to_run(fw_other)
    finally:
        c.close()


def test_a_url_package_and_software_give_their_own_attributes(
    client: RestClientCE, server: ServerThread, tmp_path: Path
) -> None:
    boards = profile(client, "boards")
    device = client.save_device(Device(name="one", device_profile_id=boards.id))
    remote = new_info(
        client, boards.id, tag="latest", url="http://example.com/fw.bin", uses_url=True
    )
    software = upload(
        client, new_info(client, boards.id, "s1", title="app", type="SOFTWARE"), b"s", tmp_path
    )
    board = Listener(server, client, device)
    try:
        boards.firmware_id = OtaPackageId(remote.id.id, "OTA_PACKAGE")
        boards.software_id = OtaPackageId(software.id.id, "OTA_PACKAGE")
        client.save_device_profile(boards)
        assert board.next() == {"deleted": ["fw_size", "fw_checksum_algorithm", "fw_checksum"]}
        assert board.next() == {
            "fw_title": "fw", "fw_version": "1.0", "fw_tag": "latest",
            "fw_url": "http://example.com/fw.bin",
        }  # fmt: skip
        assert [board.next(), board.next()] == told_to_run(software, "sw")
    finally:
        board.close()


def test_assignments_are_checked_as_thingsboard_checks_them(
    client: RestClientCE, tmp_path: Path
) -> None:
    boards, other = profile(client, "boards"), profile(client, "other")
    empty = new_info(client, boards.id, "empty")
    foreign = upload(client, new_info(client, other.id, "o"), b"x", tmp_path)
    software = upload(client, new_info(client, boards.id, "s", type="SOFTWARE"), b"x", tmp_path)
    missing = "5f1c1c4e-3c1e-4d5e-9a40-2ad1b1d1a0a0"
    for package_id, text in (
        (missing, "Can't assign non-existent firmware!"),
        (empty.id.id, "Can't assign firmware with empty data!"),
        (foreign.id.id, "Can't assign firmware with different deviceProfile!"),
        (software.id.id, "Can't assign firmware with type: SOFTWARE"),
    ):
        boards.firmware_id = OtaPackageId(package_id, "OTA_PACKAGE")
        with pytest.raises(ApiException) as on_profile:
            client.save_device_profile(boards)
        assert error_of(on_profile) == (400, text)
        device = Device(name="d", device_profile_id=boards.id, firmware_id=boards.firmware_id)
        with pytest.raises(ApiException) as on_device:
            client.save_device(device)
        assert error_of(on_device) == (400, text)
    assert client.get_tenant_devices(10, 0).total_elements == 0


def test_a_package_in_use_cannot_be_deleted_and_a_deleted_one_takes_its_chunks(
    client: RestClientCE, server: ServerThread, tmp_path: Path
) -> None:
    boards = profile(client, "boards")
    fw = upload(client, new_info(client, boards.id), os.urandom(150_000), tmp_path)
    assert chunk_rows(server) == 3
    boards.firmware_id = OtaPackageId(fw.id.id, "OTA_PACKAGE")
    boards = client.save_device_profile(boards)
    device = client.save_device(
        Device(name="d", device_profile_id=boards.id, firmware_id=boards.firmware_id)
    )
    refusals: list[tuple[Callable[[], object], str]] = [
        (lambda: None, "The otaPackage referenced by the device profile cannot be deleted!"),
        (lambda: _unassign(client, boards),
         "The otaPackage referenced by the devices cannot be deleted!"),
    ]  # fmt: skip
    for before, text in refusals:
        before()
        with pytest.raises(ApiException) as refused:
            client.delete_ota_package(fw.id)
        assert error_of(refused) == (400, text)
    device.firmware_id = None
    client.save_device(device)
    client.delete_ota_package(fw.id)
    assert chunk_rows(server) == 0
    with pytest.raises(ApiException) as gone:
        client.get_ota_package_info_by_id(fw.id)
    assert error_of(gone)[0] == 404


def _unassign(client: RestClientCE, profile: DeviceProfile) -> None:
    profile.firmware_id = None
    client.save_device_profile(profile)


def test_every_route_needs_a_login(server: ServerThread) -> None:
    some = "5f1c1c4e-3c1e-4d5e-9a40-2ad1b1d1a0a0"
    with httpx.Client(base_url=server.base_url) as http:
        for method, path in (
            ("POST", "/api/otaPackage"), ("POST", f"/api/otaPackage/{some}"),
            ("GET", f"/api/otaPackage/info/{some}"), ("GET", f"/api/otaPackage/{some}"),
            ("GET", f"/api/otaPackage/{some}/download"),
            ("GET", "/api/otaPackages?pageSize=1&page=0"),
            ("GET", f"/api/otaPackages/{some}/FIRMWARE?pageSize=1&page=0"),
            ("DELETE", f"/api/otaPackage/{some}"),
        ):  # fmt: skip
            assert http.request(method, path).status_code == 401, path


def test_only_the_upload_route_is_allowed_past_http_max_body(server: ServerThread) -> None:
    big = b"x" * 1_200_000
    some = "5f1c1c4e-3c1e-4d5e-9a40-2ad1b1d1a0a0"
    with httpx.Client(base_url=server.base_url, headers=login(server)) as http:
        info = http.post(
            "/api/otaPackage", content=big, headers={"Content-Type": "application/json"}
        )
        assert info.status_code == 413 and "--http-max-body" in info.json()["message"]
        files = {"file": ("fw.bin", big, "application/octet-stream")}
        upload = http.post(f"/api/otaPackage/{some}?checksumAlgorithm=SHA256", files=files)
        assert upload.status_code == 404  # let in (no 413); then: no such package
        data = http.post(f"/api/otaPackage/{some}/x", content=big)
        assert data.status_code == 413


def test_a_client_that_leaves_mid_upload_leaves_nothing(
    client: RestClientCE, server: ServerThread
) -> None:
    info = new_info(client, profile(client, "boards").id)
    token = login(server)["X-Authorization"]
    boundary = "b0undary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="fw.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", server.http_port), timeout=10) as sock:
        sock.sendall(
            f"POST /api/otaPackage/{info.id.id}?checksumAlgorithm=SHA256 HTTP/1.1\r\n"
            f"Host: x\r\nX-Authorization: {token}\r\nContent-Length: 900000\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n".encode()
            + head
            + os.urandom(400_000)
        )
    deadline = time.monotonic() + TIMEOUT
    while server.call(sql(server.server.store, "SELECT count(*) FROM ota_upload"))[0][0]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert not client.get_ota_package_info_by_id(info.id).has_data
    assert chunk_rows(server) == 0
