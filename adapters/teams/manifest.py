"""The Teams app package for Boeket: manifest.json (schema v1.20) and two icons, in one zip.

Teams installs a custom app from such a package (Apps → Manage your apps → Upload an app). The
manifest names the bot (its id is the app registration's client id), the command menu Teams
shows instead of slash commands (`deel`, `help`), and the message extension action
"Deel een succes" that opens the share dialog. The icons are drawn here, with the standard
library only: a 192×192 colour icon and a 32×32 white outline on transparency, as Teams wants.
"""

from __future__ import annotations

import io
import json
import math
import re
import struct
import zipfile
import zlib
from collections.abc import Callable
from typing import Any, Literal

from adapters.teams.cards import SHARE_COMMAND_ID

MANIFEST_VERSION = "1.20"
SCHEMA_URL = f"https://developer.microsoft.com/json-schemas/teams/v{MANIFEST_VERSION}/MicrosoftTeams.schema.json"
APP_VERSION = "1.0.0"
ACCENT = "#2E5E4E"
NAME_MAX = 30
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_HOST = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$")

SHORT_DESCRIPTION = "Leren in de overleggen die je team al heeft."
LONG_DESCRIPTION = (
    "Boeket brengt organisatieleren in de overleggen die teams al houden. Vóór elk "
    "teamoverleg stelt Boeket in het kanaal van de afdeling één korte reflectievraag: over een "
    "succes, een les, een lastige casus, de koers van de organisatie of wat er goed gaat. Wie "
    "wil, antwoordt met de knop Antwoorden — anoniem als de afdeling dat toestaat. Bij de start "
    "van het overleg krijgt het team de oogst als agendablok, en na afloop één vervolgvraag.\n\n"
    "Met ‘Deel een succes’ (in het menu van een bericht of bij het opstellen) deelt iemand een "
    "succes samen met de randvoorwaarden die het mogelijk maakten, zodat een andere afdeling het "
    "kan vertalen in plaats van kopiëren. Zo worden losse bloemen een boeket.\n\n"
    "Boeket post alleen in de teams waarin de app is toegevoegd. Wat een persoon alleen voor "
    "zichzelf hoort te zien, krijgt die in een eigen chat met Boeket."
)

COMMANDS = (
    ("deel", "Deel een succes met je team en de rest van de organisatie"),
    ("zoek", "Zoek wat andere afdelingen leerden over een onderwerp"),
    ("help", "Wat Boeket doet en hoe je meedoet"),
)


class PackageError(ValueError):
    """A value Teams would refuse; `field` is the option (`app_id`, `domain` or `name`)."""

    def __init__(self, field: Literal["app_id", "domain", "name"], value: str) -> None:
        super().__init__(f"{field} {value!r} is not valid")
        self.field = field
        self.value = value


def build_manifest(app_id: str, *, domain: str, name: str = "Boeket") -> dict[str, Any]:
    """The manifest. `app_id` is the bot's client id (also the app's id); `domain` is Boeket's
    host, shown as the developer's website and allowed as a domain of the app."""
    if not _GUID.match(app_id):
        raise PackageError("app_id", app_id)
    domain = domain.strip().lower()
    if not _HOST.match(domain):
        raise PackageError("domain", domain)
    if not name.strip() or name != name.strip() or len(name) > NAME_MAX:
        raise PackageError("name", name)
    app_id = app_id.lower()
    site = f"https://{domain}"
    commands = [{"title": title, "description": text} for title, text in COMMANDS]
    return {
        "$schema": SCHEMA_URL,
        "manifestVersion": MANIFEST_VERSION,
        "version": APP_VERSION,
        "id": app_id,
        "developer": {
            "name": name,
            "websiteUrl": f"{site}/",
            "privacyUrl": f"{site}/privacy",
            "termsOfUseUrl": f"{site}/terms",
        },
        "name": {"short": name, "full": f"{name} — organisatieleren in je teamoverleg"[:100]},
        "description": {"short": SHORT_DESCRIPTION, "full": LONG_DESCRIPTION},
        "icons": {"color": "color.png", "outline": "outline.png"},
        "accentColor": ACCENT,
        "bots": [
            {
                "botId": app_id,
                "scopes": ["team", "personal", "groupChat"],
                "supportsFiles": False,
                "isNotificationOnly": False,
                "commandLists": [
                    {"scopes": ["team", "groupChat"], "commands": commands},
                    {"scopes": ["personal"], "commands": commands},
                ],
            }
        ],
        "composeExtensions": [
            {
                "botId": app_id,
                "commands": [
                    {
                        "id": SHARE_COMMAND_ID,
                        "type": "action",
                        "title": "Deel een succes",
                        "description": "Deel een succes en wat het mogelijk maakte",
                        "context": ["compose", "commandBox", "message"],
                        "fetchTask": True,
                    }
                ],
            }
        ],
        "permissions": ["identity", "messageTeamMembers"],
        "validDomains": [domain],
        # Resource-specific consent: read the team's channel messages with Microsoft Graph, so a
        # post whose replica died before recording it is found instead of posted twice. The
        # `resource` does nothing for RSC, but Teams wants one.
        "webApplicationInfo": {"id": app_id, "resource": f"api://{domain}/{app_id}"},
        "authorization": {
            "permissions": {
                "resourceSpecific": [{"name": "ChannelMessage.Read.Group", "type": "Application"}]
            }
        },
    }


# --- icons ---------------------------------------------------------------------------------------


def png(width: int, height: int, pixel: Callable[[int, int], tuple[int, int, int, int]]) -> bytes:
    """An 8-bit RGBA PNG; `pixel(x, y)` gives each pixel's colour."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    rows = bytearray()
    for y in range(height):
        rows.append(0)  # filter: none
        for x in range(width):
            rows.extend(pixel(x, y))
    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(bytes(rows), 9))
        + chunk(b"IEND", b"")
    )


# Three flowers on stems: the bouquet, in unit coordinates (x, y, radius).
_FLOWERS = ((0.34, 0.36, 0.14), (0.62, 0.30, 0.15), (0.50, 0.52, 0.13))
_COLOURS = ((0xF2, 0xA3, 0x9B), (0xF6, 0xD3, 0x6B), (0xE8, 0x7C, 0xA8))
_KNOT = (0.5, 0.78)


def _stem(x: float, y: float) -> bool:
    for fx, fy, _ in _FLOWERS:
        # distance from (x, y) to the segment flower → knot
        kx, ky = _KNOT
        dx, dy = kx - fx, ky - fy
        t = max(0.0, min(1.0, ((x - fx) * dx + (y - fy) * dy) / (dx * dx + dy * dy)))
        if math.hypot(x - (fx + t * dx), y - (fy + t * dy)) < 0.025:
            return True
    return False


def _colour_pixel(size: int) -> Callable[[int, int], tuple[int, int, int, int]]:
    green = (0x2E, 0x5E, 0x4E, 0xFF)
    leaf = (0x9C, 0xC9, 0x8A, 0xFF)

    def pixel(px: int, py: int) -> tuple[int, int, int, int]:
        x, y = (px + 0.5) / size, (py + 0.5) / size
        for (fx, fy, r), colour in zip(_FLOWERS, _COLOURS, strict=True):
            d = math.hypot(x - fx, y - fy)
            if d < r * 0.35:
                return (0xFF, 0xF7, 0xE6, 0xFF)
            if d < r:
                return (*colour, 0xFF)
        if _stem(x, y) or math.hypot(x - _KNOT[0], y - _KNOT[1]) < 0.05:
            return leaf
        return green

    return pixel


def _outline_pixel(size: int) -> Callable[[int, int], tuple[int, int, int, int]]:
    white, clear = (0xFF, 0xFF, 0xFF, 0xFF), (0xFF, 0xFF, 0xFF, 0x00)

    def pixel(px: int, py: int) -> tuple[int, int, int, int]:
        x, y = (px + 0.5) / size, (py + 0.5) / size
        for fx, fy, r in _FLOWERS:
            if abs(math.hypot(x - fx, y - fy) - r * 0.8) < 0.05:
                return white
        if _stem(x * 1.0, y) and y > 0.45:
            return white
        return clear

    return pixel


def color_icon() -> bytes:
    return png(192, 192, _colour_pixel(192))


def outline_icon() -> bytes:
    return png(32, 32, _outline_pixel(32))


def package(manifest: dict[str, Any]) -> bytes:
    """The zip Teams uploads: manifest.json, color.png and outline.png at its root."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        text = json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"
        archive.writestr("manifest.json", text.encode("utf-8"))
        archive.writestr("color.png", color_icon())
        archive.writestr("outline.png", outline_icon())
    return buffer.getvalue()
