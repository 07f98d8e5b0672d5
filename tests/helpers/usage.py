"""What every fake provider's reply reports, in the one usage vocabulary (core/usage.py).

The fakes (fake_openai.py, fake_anthropic.py) each report the same call in their API's own
way: 11 input tokens (4 read from the prompt cache, 3 written to it), 7 output tokens (2 of
reasoning). Whichever integration records it, ``properties.usage`` is this.
"""

from __future__ import annotations

SAME_CALL = {
    "inputTokens": 11,
    "outputTokens": 7,
    "totalTokens": 18,
    "cacheReadTokens": 4,
    "cacheWriteTokens": 3,
    "reasoningTokens": 2,
}
