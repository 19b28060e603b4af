"""What may travel where: the rule every feature that repeats people's words must ask first.

Content from a private channel never appears in another channel unless its department opted in
(`share_from_private`). Anonymous contributions carry no name anywhere; that is kept by storage
(no author is stored) and by the renderers (they show "anonymous").
"""

from __future__ import annotations

from collections.abc import Mapping

from bot.config import Department
from bot.domain import ChannelRef
from bot.ports import Adapter


class Visibility:
    """Answers whether a department's words may be shown in a channel."""

    def __init__(self, adapters: Mapping[str, Adapter]) -> None:
        self._adapters = adapters

    async def may_show(self, source: Department, target: ChannelRef) -> bool:
        home = ChannelRef(source.platform, source.channel, source.workspace)
        if target == home or source.share_from_private:
            return True
        adapter = self._adapters.get(source.platform)
        if adapter is None:
            return False  # cannot tell, so do not
        return not await adapter.is_private(home)
