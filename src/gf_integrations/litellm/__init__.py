"""Greenflash logging for LiteLLM: ``GreenflashLogger``, a LiteLLM ``CustomLogger``.

::

    import litellm
    from gf_integrations.litellm import GreenflashLogger

    litellm.callbacks = [GreenflashLogger(external_user_id="u1")]
    litellm.completion(model="openai/gpt-4o-mini", messages=[...])

Every chat completion (``completion`` / ``acompletion``, streamed or not, failed or not)
becomes part of a Greenflash conversation. On the LiteLLM proxy, put an instance in a
module next to its ``config.yaml`` and name it there::

    litellm_settings:
      callbacks: ["greenflash_callbacks.greenflash_logger"]

Layout: ``logger`` the hooks; ``read`` LiteLLM's fields (ids, metadata, the reply);
``state`` what is kept between the hooks of one call and the capture probe.
"""

from __future__ import annotations

try:
    from litellm.integrations.custom_logger import CustomLogger  # noqa: F401
except ImportError:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "gf_integrations.litellm needs LiteLLM: pip install 'gf-integrations[litellm]'"
    ) from None

from ..core.targets import register_target_resolver
from .logger import GreenflashLogger
from .state import rating_target

__all__ = ["GreenflashLogger"]

register_target_resolver(rating_target)
