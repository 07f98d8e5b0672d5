"""The function under test, as a user writes it: configure the pack, wrap the OpenAI client.

Run by the real runtime interface client (``python -m awslambdaric app.handler``). Every
setting comes from the environment the test gives it (``GREENFLASH_BASE_URL`` at the
loopback ingest endpoint, ``OPENAI_BASE_URL`` at the fake OpenAI server).

- ``handler``: nothing else to do; the Lambda runtime patch delivers (automatic mode);
- ``decorated``: the same body under ``@gf.serverless`` (the tests turn the automatic mode
  off with ``GREENFLASH_SERVERLESS=false`` to see the decorator alone).

An event: ``{"conversation": id, "question": text, "raise": message or absent}``. The
answer carries the client's ``stats()`` as the invocation began, and the process id.
"""

from __future__ import annotations

import os
from typing import Any

import gf_integrations as gf
from gf_integrations.openai import wrap_openai
from openai import OpenAI

gf.configure()
client = wrap_openai(OpenAI())


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    stats = gf.get_client().stats()
    with gf.conversation(event["conversation"], external_user_id="u1"):
        reply = client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": event["question"]}]
        )
    if event.get("raise"):
        raise RuntimeError(event["raise"])
    return {
        "answer": reply.choices[0].message.content,
        "stats": stats,
        "pid": os.getpid(),
        "remaining_ms": context.get_remaining_time_in_millis(),
    }


decorated = gf.serverless(handler)
