"""Smoke test of the official OpenAI Python SDK against a Switchyard gateway.

Run by tests/python_sdk.test.mjs, which starts the gateway (backed by the upstream emulator) and
passes SWITCHYARD_BASE_URL (…/v1) and SWITCHYARD_API_KEY. Every check runs; the failures are
printed and the exit status is 1 if any failed.
"""

import os
import re
import sys

from openai import OpenAI

from checks import check, finish

GEN_ID = re.compile(r"^gen_[0-9A-HJKMNP-TV-Z]{26}$")


def check_usage(usage, where):
    check(usage is not None, f"{where}: usage present")
    if usage is None:
        return
    check(usage.prompt_tokens > 0, f"{where}: prompt_tokens > 0 (got {usage.prompt_tokens})")
    check(usage.completion_tokens > 0, f"{where}: completion_tokens > 0 (got {usage.completion_tokens})")
    check(
        usage.total_tokens == usage.prompt_tokens + usage.completion_tokens,
        f"{where}: total_tokens = prompt + completion ({usage})",
    )


def chat_round(client, model, provider):
    prompt = f"hello from python via {provider}"
    expected = f"Hello from emulator: {prompt}"
    messages = [{"role": "user", "content": prompt}]

    raw = client.chat.completions.with_raw_response.create(model=model, messages=messages)
    completion = raw.parse()
    check(raw.headers.get("x-switchyard-provider") == provider, f"{model}: x-switchyard-provider is {provider}")
    gen_id = raw.headers.get("x-generation-id") or ""
    check(GEN_ID.match(gen_id) is not None, f"{model}: x-generation-id looks like gen_<ulid> (got {gen_id!r})")
    check(completion.object == "chat.completion", f"{model}: object")
    check(len(completion.choices) == 1, f"{model}: one choice")
    message = completion.choices[0].message
    check(message.role == "assistant", f"{model}: role")
    check(message.content == expected, f"{model}: content {message.content!r}")
    check(completion.choices[0].finish_reason == "stop", f"{model}: finish_reason {completion.choices[0].finish_reason!r}")
    check_usage(completion.usage, f"{model} non-stream")
    if provider != "openai":
        # Translated answers carry the gateway's ids.
        check(completion.id == gen_id, f"{model}: id is the x-generation-id ({completion.id!r})")
        check(completion.model == model, f"{model}: model is the gateway model id ({completion.model!r})")

    stream = client.chat.completions.create(
        model=model, messages=messages, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    check(len(chunks) >= 3, f"{model} stream: several chunks (got {len(chunks)})")
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    check(text == expected, f"{model} stream: text {text!r}")
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    check(finishes == ["stop"], f"{model} stream: one finish_reason stop (got {finishes})")
    # The gateway's routing metadata rides in the last chunk, the usage chunk here (asked for).
    trailer = chunks[-1] if (chunks[-1].model_extra or {}).get("providerMetadata") else None
    check(trailer is not None, f"{model} stream: the last chunk carries providerMetadata")
    check(
        sum(1 for c in chunks if (c.model_extra or {}).get("providerMetadata")) == 1,
        f"{model} stream: providerMetadata in one chunk",
    )
    usage_at = [i for i, c in enumerate(chunks) if c.usage is not None]
    check(len(usage_at) == 1, f"{model} stream: exactly one usage chunk (got {len(usage_at)})")
    if usage_at:
        usage_chunk = chunks[usage_at[0]]
        check(usage_chunk.choices == [], f"{model} stream: the usage chunk has no choices")
        check_usage(usage_chunk.usage, f"{model} stream")
        finish_at = max((i for i, c in enumerate(chunks) if c.choices and c.choices[0].finish_reason), default=len(chunks))
        check(usage_at[0] > finish_at, f"{model} stream: usage comes after the finish chunk")
        check(usage_at[0] == len(chunks) - 1, f"{model} stream: the usage chunk is the last")
        if trailer is not None:
            meta = (trailer.model_extra or {}).get("providerMetadata") or {}
            check(
                meta.get("gateway", {}).get("routing", {}).get("finalProvider") == provider,
                f"{model} stream: the trailer names the provider ({meta})",
            )
    check(all(c.object == "chat.completion.chunk" for c in chunks), f"{model} stream: chunk objects")

    # The loop from OpenAI's own docs, without include_usage: choices[0] in every chunk.
    naive = ""
    for c in client.chat.completions.create(model=model, messages=messages, stream=True):
        naive += c.choices[0].delta.content or ""
    check(naive == expected, f"{model} stream without usage: text {naive!r}")
    meta = (c.model_extra or {}).get("providerMetadata") or {}
    check(
        meta.get("gateway", {}).get("routing", {}).get("finalProvider") == provider,
        f"{model} stream without usage: the last chunk carries the routing metadata ({meta})",
    )
    # The SDK's stream helper keeps the usage and the finish reason to the end.
    with client.chat.completions.stream(
        model=model, messages=messages, stream_options={"include_usage": True}
    ) as helper:
        final = helper.get_final_completion()
    check(final.choices[0].message.content == expected, f"{model} stream helper: content")
    check(final.choices[0].finish_reason == "stop", f"{model} stream helper: finish_reason")
    check(final.usage is not None and final.usage.total_tokens > 0, f"{model} stream helper: usage kept ({final.usage})")


def main():
    base_url = os.environ["SWITCHYARD_BASE_URL"]
    api_key = os.environ["SWITCHYARD_API_KEY"]
    client = OpenAI(api_key=api_key, base_url=base_url, max_retries=0, timeout=20.0)

    models = list(client.models.list())
    ids = [m.id for m in models]
    check(len(ids) > 1, f"models.list: several models (got {len(ids)})")
    for wanted in ("openai/gpt-4o", "anthropic/claude-sonnet-4-6"):
        check(wanted in ids, f"models.list: {wanted} listed")
    check(all(m.object == "model" for m in models), "models.list: every entry is a model")

    gpt = client.models.retrieve("openai/gpt-4o")
    check(gpt.id == "openai/gpt-4o", f"models.retrieve: id {gpt.id!r}")
    check(gpt.owned_by == "openai", f"models.retrieve: owned_by {gpt.owned_by!r}")

    chat_round(client, "openai/gpt-4o", "openai")
    chat_round(client, "anthropic/claude-sonnet-4-6", "anthropic")

    return finish("python sdk smoke")


if __name__ == "__main__":
    sys.exit(main())
