"""OpenAI's Python package and LangChain's two wrappers against a served model, as users call
them (calls.py): `python run_clients.py BASE_URL MODEL` prints one JSON line per call with
what came back, and exits non-zero naming the first call whose answer is not as OpenAI's
API documents it."""

import json
import sys

from calls import calls


def text_of(chunks):
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def check(name, got):
    """What the answer to call `name` must look like; a short summary of it."""
    if name == "openai_completion":
        choice = got.choices[0]
        assert choice.text.strip() and choice.finish_reason in ("stop", "length"), got
        assert got.usage.prompt_tokens == 2, got.usage
        return choice.text
    if name == "openai_completion_list_n":
        assert [c.index for c in got.choices] == [0, 1, 2, 3], got
        return [c.text for c in got.choices]
    if name == "openai_completion_echo_logprobs":
        choice = got.choices[0]
        assert choice.text.startswith("recipe for"), choice.text
        assert choice.logprobs.tokens[:2] == ["recipe", " for"], choice.logprobs.tokens
        assert choice.logprobs.token_logprobs[0] is None, choice.logprobs
        assert all(len(t) == 2 for t in choice.logprobs.top_logprobs[1:]), choice.logprobs
        return choice.text
    if name == "openai_completion_best_of":
        assert len(got.choices) == 1 and got.choices[0].logprobs is None, got
        return got.choices[0].text
    if name == "openai_chat":
        choice = got.choices[0]
        assert choice.message.role == "assistant" and choice.message.content, got
        entries = choice.logprobs.content
        assert entries and all(len(e.top_logprobs) == 2 for e in entries), entries
        return choice.message.content
    if name == "openai_chat_streamed":
        assert got[0].choices[0].delta.role == "assistant", got[0]
        assert got[-1].usage.completion_tokens > 0 and not got[-1].choices, got[-1]
        finish = [c.choices[0].finish_reason for c in got if c.choices]
        assert finish[-1] in ("stop", "length"), finish
        assert text_of(got), got
        return text_of(got)
    if name == "langchain_openai":
        assert isinstance(got, str) and got.strip(), got
        return got
    if name == "langchain_chat":
        assert got.content, got
        return got.content
    if name == "langchain_chat_streamed":
        text = "".join(chunk.content for chunk in got)
        assert len(got) > 2 and text, got
        return text
    raise AssertionError(f"no check for {name}")


def main():
    base_url, model = sys.argv[1:3]
    for name, call in calls(base_url, model):
        try:
            summary = check(name, call())
        except Exception as error:  # noqa: BLE001 - every failure is reported the same way
            print(f"{name}: {type(error).__name__}: {error}", file=sys.stderr)
            sys.exit(1)
        print(json.dumps({"name": name, "got": summary}))


main()
