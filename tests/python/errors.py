"""The official OpenAI Python SDK meeting the gateway's failures (run by
tests/python_sdk.test.mjs, which scripts the emulator for each case in turn and passes
SWITCHYARD_BASE_URL and SWITCHYARD_API_KEY). Exit status 1 if any check failed.
"""

import os
import sys

import openai
from openai import OpenAI

from checks import check, finish



def main():
    base_url = os.environ["SWITCHYARD_BASE_URL"]
    api_key = os.environ["SWITCHYARD_API_KEY"]
    once = OpenAI(api_key=api_key, base_url=base_url, max_retries=0, timeout=20.0)
    retrying = OpenAI(api_key=api_key, base_url=base_url, max_retries=2, timeout=20.0)
    user = [{"role": "user", "content": "python meets errors"}]

    # 1. The provider rate-limits (429 with Retry-After: 1, twice): RateLimitError, the wait kept.
    try:
        once.chat.completions.create(model="openai/gpt-4o", messages=user)
        check(False, "429: an exception was raised")
    except openai.RateLimitError as e:
        check(e.status_code == 429, f"429: status ({e.status_code})")
        check(e.response.headers.get("retry-after") == "1", f"429: Retry-After kept ({e.response.headers})")
        check("Rate limit" in e.message, f"429: the provider's message ({e.message})")
        check(e.response.headers.get("x-switchyard-attempts") == "openai:429,openai:429", "429: attempts header")

    # 2. A stream that fails after content: the text so far, then APIError, no finish.
    text, finishes = "", []
    try:
        stream = once.chat.completions.create(model="anthropic/claude-sonnet-4-6", messages=user, stream=True)
        for chunk in stream:
            for choice in chunk.choices:
                text += choice.delta.content or ""
                if choice.finish_reason:
                    finishes.append(choice.finish_reason)
        check(False, "cut stream: an exception was raised")
    except openai.APIError as e:
        check("Overloaded" in str(e.message), f"cut stream: the provider's error ({e.message})")
    check(text == "Hello from ", f"cut stream: the content sent before the error ({text!r})")
    check(finishes == [], f"cut stream: no fake finish ({finishes})")

    # 3. An answer larger than the gateway reads: final, and the retrying client does not retry.
    try:
        retrying.chat.completions.create(model="openai/gpt-4o", messages=user)
        check(False, "too large: an exception was raised")
    except openai.APIStatusError as e:
        check(e.status_code == 502, f"too large: 502 ({e.status_code})")
        check(e.code == "upstream_response_too_large", f"too large: code ({e.code})")

    return finish("python sdk errors")


if __name__ == "__main__":
    sys.exit(main())
