"""ThingsBoard's OtaPackageController: OTA package infos, their files (upload, download),
lists and deletion. Every route needs a JWT (`auth.User`); tinyboard's one role,
TENANT_ADMIN, may call them all, as in ThingsBoard.

A package is created as an info (`POST /api/otaPackage`), then gets its file
(`POST /api/otaPackage/{id}`, multipart `file`, up to --ota-max-size) or names a `url`
instead. Files stream in and out in chunks (`core/ota.py`, the store): no request holds a
whole image. Errors carry ThingsBoard's texts; assignment to profiles and devices lives in
`web/profiles.py` and `web/devices.py` (its effect: `core/ota_state.py`).
"""

from __future__ import annotations

import base64
import re
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any, Literal
from urllib.parse import quote

import orjson
from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from starlette.datastructures import UploadFile

from tinyboard.core import ota
from tinyboard.core.models import ChecksumAlgorithm, OtaPackage, OtaType
from tinyboard.errors import DataValidationError, NotFoundError, PayloadError
from tinyboard.storage.base import Store
from tinyboard.web.auth import User
from tinyboard.web.context import context_of
from tinyboard.web.entities import EntityId, Page, PageData, parse_uuid, tenant_id
from tinyboard.web.errors import PayloadTooLarge
from tinyboard.web.models import AdditionalInfo, errors

router = APIRouter(tags=["OTA packages"], responses=errors(400, 401, 404))

MAX_TEXT = 255
"""ThingsBoard's @Length default for title, version, tag, url, file name, content type."""
MAX_CHECKSUM = 1020
READ_SIZE = 65_536
MEDIA_TYPE = re.compile(r"[\w!#$&^.+-]+/[\w!#$&^.+-]+(\s*;[ -~]*)?", re.ASCII)
SORTS: dict[str, Any] = {
    "createdTime": lambda p: p.created_ts,
    "type": lambda p: p.type,
    "title": lambda p: p.title,
    "version": lambda p: p.version,
    "tag": lambda p: (p.tag is None, p.tag or ""),
    "url": lambda p: (p.url is None, p.url or ""),
    "fileName": lambda p: (p.file_name is None, p.file_name or ""),
    "dataSize": lambda p: (p.data_size is None, p.data_size or 0),
    "checksum": lambda p: (p.checksum is None, p.checksum or ""),
}
"""ThingsBoard's sort properties of OTA packages (no value sorts last, as PostgreSQL's)."""


class OtaPackageInfoOut(BaseModel):
    """ThingsBoard's OtaPackageInfo."""

    id: EntityId
    createdTime: int
    additionalInfo: dict[str, Any] | None = None
    tenantId: EntityId
    deviceProfileId: EntityId | None
    type: OtaType
    title: str
    version: str
    tag: str | None
    url: str | None
    hasData: bool
    fileName: str | None
    contentType: str | None
    checksumAlgorithm: ChecksumAlgorithm | None
    checksum: str | None
    dataSize: int | None
    externalId: EntityId | None = None
    name: str

    @classmethod
    def of(cls, package: OtaPackage) -> OtaPackageInfoOut:
        profile = package.profile_id
        return cls(
            id=EntityId(entityType="OTA_PACKAGE", id=package.id),
            createdTime=package.created_ts,
            additionalInfo=package.additional_info,
            tenantId=tenant_id(),
            deviceProfileId=None if profile is None else EntityId.of("DEVICE_PROFILE", profile),
            type=package.type,
            title=package.title,
            version=package.version,
            tag=package.tag,
            url=package.url,
            hasData=package.has_data,
            fileName=package.file_name,
            contentType=package.content_type,
            checksumAlgorithm=package.checksum_algorithm,
            checksum=package.checksum,
            dataSize=package.data_size,
            name=package.title,
        )


class OtaPackageOut(OtaPackageInfoOut):
    """ThingsBoard's OtaPackage: the info and its file, base64 (null without one)."""

    data: str | None = None


class OtaPackageIn(BaseModel):
    """ThingsBoard's SaveOtaPackageInfoRequest: without `id` a new package, with `id` an
    update (only `additionalInfo` may change then, as in ThingsBoard). `usesUrl`: the
    package is the file at `url` (its checksum fields may be given), not an upload."""

    id: EntityId | None = None
    deviceProfileId: EntityId | None = None
    type: OtaType | None = None
    title: str | None = Field(None, max_length=10_000)
    version: str | None = Field(None, max_length=10_000)
    tag: str | None = Field(None, max_length=10_000)
    url: str | None = Field(None, max_length=10_000)
    usesUrl: bool = False
    fileName: str | None = Field(None, max_length=10_000)
    contentType: str | None = Field(None, max_length=10_000)
    checksumAlgorithm: ChecksumAlgorithm | None = None
    checksum: str | None = Field(None, max_length=10_000)
    dataSize: int | None = Field(None, ge=0, le=2**53)
    additionalInfo: AdditionalInfo = None


async def package_by_id(store: Store, package_id: str) -> OtaPackage:
    """The package with this UUID; 400 for text that is no UUID, 404 for an unknown one."""
    return await store.get_ota_package(parse_uuid(package_id, "otaPackageId"))


def _check_texts(body: OtaPackageIn) -> None:
    """ThingsBoard's BaseOtaPackageDataValidator, in its order and words."""
    if not body.title:
        raise DataValidationError("OtaPackage title should be specified!")
    if body.type is None:
        raise DataValidationError("Type should be specified!")
    if not body.version:
        raise DataValidationError("OtaPackage version should be specified!")
    fields = {"title": body.title, "version": body.version, "tag": body.tag, "url": body.url}
    fields |= {"file name": body.fileName, "contentType": body.contentType}
    for what, text in fields.items():
        if text is not None and len(text) > MAX_TEXT:
            raise DataValidationError(f"The length of {what} should be equal or shorter than 255")
    if body.checksum is not None and len(body.checksum) > MAX_CHECKSUM:
        raise DataValidationError("The length of checksum should be equal or shorter than 1020")


def _profile_of(body: OtaPackageIn) -> str | None:
    if body.deviceProfileId is None:
        return None
    if body.deviceProfileId.entityType != "DEVICE_PROFILE":
        raise PayloadError("deviceProfileId must be a DEVICE_PROFILE id")
    return parse_uuid(body.deviceProfileId.id, "deviceProfileId")


def _new_package(body: OtaPackageIn) -> OtaPackage:
    url = body.url or None
    return OtaPackage(
        id=str(uuid.uuid4()),
        created_ts=int(time.time() * 1000),
        profile_id=_profile_of(body),
        type=body.type or "FIRMWARE",
        title=body.title or "",
        version=body.version or "",
        tag=body.tag,
        url=url,
        # a URL package may say what is there; a file's fields come with its upload
        file_name=body.fileName if url else None,
        content_type=body.contentType if url else None,
        checksum_algorithm=body.checksumAlgorithm if url else None,
        checksum=body.checksum if url else None,
        data_size=body.dataSize if url else None,
        additional_info=body.additionalInfo,
    )


_FIXED = (
    ("type", "type", "Updating type is prohibited!"),
    ("title", "title", "Updating otaPackage title is prohibited!"),
    ("version", "version", "Updating otaPackage version is prohibited!"),
    ("tag", "tag", "Updating otaPackage tag is prohibited!"),
    ("profile_id", "deviceProfileId", "Updating otaPackage deviceProfile is prohibited!"),
)
_SET_ONCE = (
    ("file_name", "fileName", "Updating otaPackage file name is prohibited!"),
    ("content_type", "contentType", "Updating otaPackage content type is prohibited!"),
    # ThingsBoard's texts, as they are (its validator repeats the content type's)
    ("checksum_algorithm", "checksumAlgorithm", "Updating otaPackage content type is prohibited!"),
    ("checksum", "checksum", "Updating otaPackage content type is prohibited!"),
    ("data_size", "dataSize", "Updating otaPackage data size is prohibited!"),
    ("url", "url", "Updating otaPackage URL is prohibited!"),
)
"""ThingsBoard's validateUpdate: fields that never change, and fields that never change
once they have a value."""


def _updated_package(old: OtaPackage, body: OtaPackageIn) -> OtaPackage:
    new = _new_package(body)
    for field, _, text in _FIXED:
        if getattr(old, field) != getattr(new, field):
            raise DataValidationError(text)
    changes: dict[str, Any] = {"additional_info": body.additionalInfo}
    url = body.url or None
    if old.url is None and url is not None and old.data_upload is not None:
        raise DataValidationError("Updating otaPackage URL is prohibited!")
    for field, name, text in _SET_ONCE:
        value = url if field == "url" else getattr(body, name)
        kept = getattr(old, field)
        if kept is not None and kept != value:
            raise DataValidationError(text)
        if kept is None and (url is not None or field == "url"):
            changes[field] = value
    return replace(old, **changes)


@router.post("/api/otaPackage", response_model=OtaPackageInfoOut)
async def save_info(body: OtaPackageIn, request: Request, _: User) -> OtaPackageInfoOut:
    """Create an OTA package's info (with `id`: update it; only `additionalInfo` may
    change). Title and version are unique together. `usesUrl` with a `url`: the package
    is that URL instead of an uploaded file."""
    if body.usesUrl and not (body.url or "").strip():
        raise DataValidationError("Ota package URL should be specified!")
    _check_texts(body)
    store = context_of(request).store
    if body.id is None:
        package = _new_package(body)
    else:
        if body.id.entityType != "OTA_PACKAGE":
            raise PayloadError("id must be an OTA_PACKAGE id")
        package = _updated_package(await package_by_id(store, body.id.id), body)
    return OtaPackageInfoOut.of(await store.save_ota_package(package))


UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "checksumAlgorithm": {"type": "string", "maxLength": 32},
                        "checksum": {"type": "string", "maxLength": MAX_CHECKSUM},
                    },
                }
            }
        },
    }
}


@router.post(
    "/api/otaPackage/{otaPackageId}",
    response_model=OtaPackageInfoOut,
    responses=errors(413),
    openapi_extra=UPLOAD_BODY,
)
async def save_data(
    otaPackageId: str,
    request: Request,
    _: User,
    checksumAlgorithm: str | None = Query(None, max_length=32),
    checksum: str | None = Query(None, max_length=MAX_CHECKSUM),
) -> OtaPackageInfoOut:
    """Upload a package's file (multipart part `file`, at most --ota-max-size bytes).
    `checksumAlgorithm` (MD5, SHA256, SHA384, SHA512, CRC32, MURMUR3_32, MURMUR3_128) and
    `checksum` come as query parameters or form fields, as ThingsBoard reads them; without
    `checksum` it is computed, with one it must match ("Wrong otaPackage file!", and the
    package stays without data)."""
    ctx = context_of(request)
    package = await package_by_id(ctx.store, otaPackageId)
    async with request.form(max_files=1, max_fields=16, max_part_size=MAX_CHECKSUM * 4) as form:
        algorithm = ota.parse_algorithm(checksumAlgorithm or _field(form.get("checksumAlgorithm")))
        given = checksum if checksum is not None else _field(form.get("checksum"))
        if len(given) > MAX_CHECKSUM:
            raise DataValidationError("The length of checksum should be equal or shorter than 1020")
        file = form.get("file")
        if not isinstance(file, UploadFile):
            raise PayloadError("Required request part 'file' is not present")
        if (file.size or 0) > ctx.ota_max_size:
            raise PayloadTooLarge(_too_large(ctx.ota_max_size))
        saved = await ota.upload(
            ctx.store,
            package,
            _read(file),
            algorithm=algorithm,
            checksum=given or None,
            file_name=_file_name(file.filename),
            content_type=_content_type(file.content_type),
        )
    return OtaPackageInfoOut.of(saved)


def _field(value: object) -> str:
    return value if isinstance(value, str) else ""


def _too_large(limit: int) -> str:
    return (
        f"the OTA package file is over the {limit}-byte limit: send a smaller one, or ask "
        "the admin to raise --ota-max-size"
    )


def _file_name(name: str | None) -> str:
    name = (name or "").strip()
    if len(name) > MAX_TEXT:
        raise DataValidationError("The length of file name should be equal or shorter than 255")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise PayloadError("the file name holds control characters; send a plain file name")
    return name


def _content_type(text: str | None) -> str:
    text = (text or "").strip()
    if len(text) > MAX_TEXT:
        raise DataValidationError("The length of contentType should be equal or shorter than 255")
    if text and not MEDIA_TYPE.fullmatch(text):
        raise PayloadError(f"{text[:40]!r} is no content type; send e.g. application/octet-stream")
    return text


async def _read(file: UploadFile) -> AsyncIterator[bytes]:
    while piece := await file.read(READ_SIZE):
        yield piece


@router.get("/api/otaPackage/info/{otaPackageId}", response_model=OtaPackageInfoOut)
async def get_info(otaPackageId: str, request: Request, _: User) -> OtaPackageInfoOut:
    return OtaPackageInfoOut.of(await package_by_id(context_of(request).store, otaPackageId))


@router.get("/api/otaPackage/{otaPackageId}", response_model=OtaPackageOut)
async def get_package(otaPackageId: str, request: Request, _: User) -> Response:
    """The info with the file as base64 `data` (null without one), streamed."""
    store = context_of(request).store
    package = await package_by_id(store, otaPackageId)
    head = orjson.dumps(OtaPackageInfoOut.of(package).model_dump(mode="json"))[:-1]
    return StreamingResponse(_with_data(head, store, package), media_type="application/json")


async def _with_data(head: bytes, store: Store, package: OtaPackage) -> AsyncIterator[bytes]:
    if package.data_upload is None:
        yield head + b',"data":null}'
        return
    yield head + b',"data":"'
    carry = b""
    async for chunk in store.ota_data(package):
        pending = carry + chunk
        cut = len(pending) - len(pending) % 3
        yield base64.b64encode(pending[:cut])
        carry = pending[cut:]
    yield base64.b64encode(carry) + b'"}'


@router.get(
    "/api/otaPackage/{otaPackageId}/download",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
async def download(otaPackageId: str, request: Request, _: User) -> StreamingResponse:
    """The package's file as uploaded: its content type, `Content-Disposition` and
    `x-filename` with its file name, streamed from the store."""
    store = context_of(request).store
    package = await package_by_id(store, otaPackageId)
    if package.has_url:
        raise PayloadError(
            f"the OTA package is the URL {package.url!r}, not a file: fetch it there"
        )
    if package.data_upload is None:
        raise NotFoundError(
            f"the OTA package {package.id} has no file yet: upload one with "
            f"POST /api/otaPackage/{package.id}"
        )
    name = package.file_name or "package"
    headers = {
        "Content-Disposition": _disposition(name),
        "x-filename": name if _plain(name) else quote(name),
        "Content-Length": str(package.data_size or 0),
    }
    return StreamingResponse(
        store.ota_data(package), media_type=package.content_type, headers=headers
    )


def _plain(name: str) -> bool:
    return name.isascii() and not any(c in name for c in '";\\') and name.isprintable()


def _disposition(name: str) -> str:
    """ThingsBoard's `attachment;filename=<name>`; a name a header cannot carry as it is
    gets RFC 6266's `filename*` too."""
    if _plain(name):
        return f"attachment;filename={name}"
    fallback = "".join(c if (c.isascii() and c.isalnum()) or c in "._-" else "_" for c in name)
    return f"attachment;filename={fallback};filename*=UTF-8''{quote(name)}"


@router.get("/api/otaPackages", response_model=PageData[OtaPackageInfoOut])
async def packages_page(request: Request, _: User, page: Page) -> PageData[OtaPackageInfoOut]:
    """A page of OTA package infos (`textSearch`: part of the title; `sortProperty`:
    createdTime, type, title, version, tag, url, fileName, dataSize, checksum)."""
    found = await context_of(request).store.ota_packages()
    return page.apply(found, text=lambda p: p.title, sort=SORTS).map(OtaPackageInfoOut.of)


@router.get("/api/otaPackages/{deviceProfileId}/{type}", response_model=PageData[OtaPackageInfoOut])
async def profile_packages_page(
    deviceProfileId: str,
    type: Literal["FIRMWARE", "SOFTWARE"],
    request: Request,
    _: User,
    page: Page,
) -> PageData[OtaPackageInfoOut]:
    """A page of a profile's packages of one type that have a file or a URL (those it
    can be given), as the previous route."""
    profile = parse_uuid(deviceProfileId, "deviceProfileId")
    found = [
        p
        for p in await context_of(request).store.ota_packages()
        if p.profile_id == profile and p.type == type and p.has_data
    ]
    return page.apply(found, text=lambda p: p.title, sort=SORTS).map(OtaPackageInfoOut.of)


@router.delete("/api/otaPackage/{otaPackageId}", response_class=Response)
async def delete_package(otaPackageId: str, request: Request, _: User) -> Response:
    """Delete a package and its file; 400 while a profile or a device is given it."""
    store = context_of(request).store
    await store.delete_ota_package((await package_by_id(store, otaPackageId)).id)
    return Response(status_code=200)
