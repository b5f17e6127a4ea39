"""The calls users make with OpenAI's Python package and LangChain, shared by the capture of
their request bodies (capture.py) and the run against a served model (run_clients.py)."""

from langchain_openai import ChatOpenAI, OpenAI
from openai import OpenAI as Client


def calls(base_url, model):
    """(name, function) pairs; each function makes one call and returns what it got back."""
    client = Client(base_url=base_url, api_key="unused")
    wrapped = dict(model=model, base_url=base_url, api_key="unused", max_retries=0)

    def chat_streamed():
        stream = client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": "recipe for"}],
            max_tokens=20,
            seed=3,
            stream=True,
            stream_options={"include_usage": True},
        )
        return list(stream)

    return [
        ("openai_completion", lambda: client.completions.create(
            model=model, prompt="recipe for", max_tokens=20, seed=1)),
        ("openai_completion_list_n", lambda: client.completions.create(
            model=model, prompt=["recipe for", "recipe for roast"], n=2, max_tokens=10,
            temperature=0.8, seed=2)),
        ("openai_completion_echo_logprobs", lambda: client.completions.create(
            model=model, prompt="recipe for", echo=True, logprobs=2, max_tokens=5)),
        ("openai_completion_best_of", lambda: client.completions.create(
            model=model, prompt="recipe for", n=1, best_of=3, max_tokens=10, seed=5)),
        ("openai_chat", lambda: client.chat.completions.create(
            model=model, messages=[
                {"role": "system", "content": "You write recipes."},
                {"role": "user", "content": "recipe for"},
            ], max_completion_tokens=20, seed=4, logprobs=True, top_logprobs=2)),
        ("openai_chat_streamed", chat_streamed),
        ("langchain_openai", lambda: OpenAI(max_tokens=20, **wrapped).invoke("recipe for")),
        ("langchain_chat", lambda: ChatOpenAI(max_tokens=20, **wrapped).invoke("recipe for")),
        ("langchain_chat_streamed", lambda: list(
            ChatOpenAI(max_tokens=20, **wrapped).stream("recipe for"))),
    ]
