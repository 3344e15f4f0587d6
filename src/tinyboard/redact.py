"""URLs as they may be shown or logged: the secrets they often carry taken out."""

from __future__ import annotations

from urllib.parse import urlsplit


def redact_url(url: str) -> str:
    """`scheme://host[:port]/path`, with `***` where userinfo or a query was: both often
    carry credentials (webhooks: `https://user:pass@host/hook?token=...`)."""
    parts = urlsplit(url)
    _, at, host = parts.netloc.rpartition("@")
    userinfo = "***@" if at else ""
    query = "?***" if parts.query else ""
    return f"{parts.scheme}://{userinfo}{host}{parts.path}{query}"


def hide_password(url: str) -> str:
    """A store URL with its password as `***` (the user, host, database and `?schema=`
    stay: they tell an operator which database it is)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    userinfo, _, host = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    return parts._replace(netloc=f"{user}:***@{host}").geturl()
