"""Posting a claimed message once: an idempotency key, and a look before posting again.

Every claimed step (an occurrence, a cross-post suggestion, a digest) posts with a key derived
from its row ("occurrence:12"). If its claim is taken over, from a replica that died or from an
attempt that failed, the earlier attempt may have reached the platform after all: the new
claimer first asks the adapter for a message with that key and, if there is one, records it
instead of posting a second time.
"""

from __future__ import annotations

import logging
from datetime import datetime

from bot.domain import ChannelRef, PostedMessage
from bot.messages import Message
from bot.ports import Adapter

log = logging.getLogger(__name__)


async def post_once(
    adapter: Adapter,
    channel: ChannelRef,
    message: Message,
    *,
    key: str,
    since: datetime,
    retaken: bool,
    thread: PostedMessage | None = None,
) -> PostedMessage:
    """Post `message` in `channel` (in `thread`'s thread if given), unless it is already there.

    `retaken`: an earlier claim on the same row existed, so its post may have gone out. `since`:
    no message with this key can be older (the row's due time).
    """
    if retaken:
        found = await adapter.find_posted(
            channel, key, since, thread_id=thread.thread_id if thread else None
        )
        if found is not None:
            log.info("%s was already posted before its claim was taken over", key)
            return found
    if thread is not None:
        return await adapter.reply(thread, message, key=key)
    return await adapter.post(channel, message, key=key)
